#!/usr/bin/env python3
"""A TEST DOUBLE of an encrypt-repo `exec` key-provider program (see crates/keys/EXEC-PROTOCOL.md).

NOT FOR REAL USE: it keeps its master key in a plain file, and its wrapping is built from the
Python standard library for the tests' sake (HMAC-SHA256 in counter mode as a keystream, then an
HMAC-SHA256 tag over key id, context, nonce and ciphertext: encrypt-then-MAC). A real program
calls a KMS.

Usage: test-kms.py --key-file PATH [--misbehave MODE] [--pid-file PATH] [--record PATH]

--record saves each raw request to PATH (the tests compare it with EXEC-PROTOCOL.md).

Key file: 64 hex digits (the 32-byte master key) on the first line; an optional second line
holds the key's state (usable, disabled, revoked, access_denied, not_found), so tests can
revoke the key. A missing key file reads as not_found.

--misbehave makes it break the protocol in one way, for the failure tests: sleep, exit, garbage,
huge, no-stdin, short-key, leak-stderr, missing-fields, error-other, chatty-stderr, bad-state.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time

NONCE_LEN = 16
TAG_LEN = 16
KEY_LEN = 32
STATES = ("usable", "disabled", "revoked", "access_denied", "not_found")


def respond(obj):
    sys.stdout.write(json.dumps(obj))
    sys.stdout.flush()
    sys.exit(0)


def error(kind, message):
    respond({"error": {"kind": kind, "message": message}})


def b64(data):
    return base64.b64encode(data).decode("ascii")


def unb64(text):
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None


def load_key(path):
    """Returns (master key or None, state)."""
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().split()
    except FileNotFoundError:
        return None, "not_found"
    key = bytes.fromhex(lines[0])
    state = lines[1] if len(lines) > 1 else "usable"
    return key, state


def subkey(master, label):
    return hmac.new(master, b"encrypt-repo test-kms " + label, hashlib.sha256).digest()


def keystream(master, nonce, length):
    enc = subkey(master, b"enc")
    out = b""
    counter = 0
    while len(out) < length:
        out += hmac.new(enc, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
        counter += 1
    return out[:length]


def tag(master, key_id, context, nonce, ct):
    def lp(b):
        return len(b).to_bytes(4, "big") + b

    msg = (
        lp(key_id.encode("utf-8"))
        + lp(context["repository_id"].encode("ascii"))
        + lp(context["data_key_id"].encode("ascii"))
        + nonce
        + ct
    )
    return hmac.new(subkey(master, b"mac"), msg, hashlib.sha256).digest()[:TAG_LEN]


def seal(master, key_id, context, plaintext):
    nonce = os.urandom(NONCE_LEN)
    ct = bytes(a ^ b for a, b in zip(plaintext, keystream(master, nonce, len(plaintext))))
    return nonce + ct + tag(master, key_id, context, nonce, ct)


def open_(master, key_id, context, blob):
    if blob is None or len(blob) != NONCE_LEN + KEY_LEN + TAG_LEN:
        return None
    nonce, ct, t = blob[:NONCE_LEN], blob[NONCE_LEN:-TAG_LEN], blob[-TAG_LEN:]
    if not hmac.compare_digest(t, tag(master, key_id, context, nonce, ct)):
        return None
    return bytes(a ^ b for a, b in zip(ct, keystream(master, nonce, len(ct))))


def master_key_name(master):
    return "test-kms:" + hashlib.sha256(b"test-kms id" + master).hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--misbehave", default="")
    ap.add_argument("--pid-file")
    ap.add_argument("--record")
    args = ap.parse_args()
    mode = args.misbehave

    if args.pid_file:
        with open(args.pid_file, "w", encoding="ascii") as f:
            f.write(str(os.getpid()))
    if mode == "sleep":
        time.sleep(3600)
    if mode == "exit":
        sys.stderr.write("test-kms: simulated crash\nsecond line not shown\n")
        sys.exit(3)
    if mode == "garbage":
        sys.stdout.write("this is not JSON {")
        sys.exit(0)
    if mode == "huge":
        chunk = "x" * (1 << 20)
        for _ in range(10):
            sys.stdout.write(chunk)
        sys.exit(0)
    if mode == "no-stdin":
        respond({"state": "usable"})
    if mode == "chatty-stderr":
        sys.stderr.write("noise " * (1 << 18))

    raw = sys.stdin.buffer.read()
    if args.record:
        with open(args.record, "wb") as f:
            f.write(raw)
    request = json.loads(raw)
    if request.get("protocol") != 1:
        error("other", "unsupported protocol version")
    op = request.get("op")
    key_id = request.get("key_id", "")
    context = request.get("context")
    master, state = load_key(args.key_file)

    if mode == "leak-stderr" and master is not None:
        sys.stderr.write("master key is " + master.hex() + "\n")
        sys.exit(1)
    if mode == "missing-fields":
        respond({})
    if mode == "error-other":
        error("other", "simulated throttling, try again later")

    if op == "status":
        if mode == "bad-state":
            respond({"state": "sideways"})
        if state != "usable":
            respond({"state": state})
        respond({"state": "usable", "rotation": {"automatic": False, "current_version": 1}})
    if state != "usable":
        error("key_unavailable", "test key is " + state)
    if op == "generate":
        plaintext = os.urandom(KEY_LEN - 1 if mode == "short-key" else KEY_LEN)
        blob = seal(master, key_id, context, plaintext)
        respond({"plaintext": b64(plaintext), "ciphertext": b64(blob), "master_key": master_key_name(master)})
    if op == "wrap":
        plaintext = unb64(request.get("plaintext", ""))
        if plaintext is None or len(plaintext) != KEY_LEN:
            error("other", "wrap needs a 32-byte base64 plaintext")
        respond({"ciphertext": b64(seal(master, key_id, context, plaintext)), "master_key": master_key_name(master)})
    if op == "unwrap":
        plaintext = open_(master, key_id, context, unb64(request.get("ciphertext", "")))
        if plaintext is None:
            error("unwrap_failed", "ciphertext does not authenticate")
        if mode == "short-key":
            plaintext = plaintext[:-1]
        respond({"plaintext": b64(plaintext)})
    error("other", "unknown op")


if __name__ == "__main__":
    main()
