#!/usr/bin/env python3
"""er_recover: read an encrypt-repo repository without encrypt-repo.

A second, independent reader, written from FORMAT.md (the object format) and KEYS.md (key files,
passphrases, wraps, the keyring and the registration) alone. It reads a repository directory
(a local repository, or a copy of a bucket on disk) whose data keys are wrapped by a `local` key
file or a `passphrase`; for `aws-kms` and `openbao` it prints the KMS command that unwraps each
data key (KEYS.md §8, §9) and takes the unwrapped keys with --data-key.

Needs Python 3.9+ and the `cryptography` package (>= 44, for Argon2id; tested with 50.0.2):

    python3 -m venv venv && venv/bin/pip install cryptography==50.0.2
    venv/bin/python er_recover.py --key-file master.key REPO ls
    venv/bin/python er_recover.py --key-file master.key REPO cat backups/notes.txt > notes.txt
    venv/bin/python er_recover.py --passphrase-env PW REPO restore OUT_DIR

Every byte it returns has been authenticated; any failure stops with the error name of the spec
(`commitment mismatch`, `unwrap failed`, ...) and exit code 1. Exit codes: 0 ok, 1 refused
(verification or key failure), 2 usage, 3 not found.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# ---------------------------------------------------------------------------------------------
# Errors: one name per failure the specs name (FORMAT.md §2, §4, §5, §6; KEYS.md §10).


class Refused(Exception):
    """A verification or key failure. `name` is the spec's error name."""

    def __init__(self, name, detail=""):
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name


class Usage(Exception):
    """A bad command line."""


class NotFound(Exception):
    """A repository, object or keyring record that does not exist."""


# ---------------------------------------------------------------------------------------------
# FORMAT.md: constants (§1), header (§2), derivation (§3), chunks (§4), sizes (§5), ranges (§6).

MAGIC = bytes.fromhex("894552500d0a1a0a")
H = 96
T = 16
MAX_CHUNKS = 2**32
OBJECT_KEY_LABEL = b"encrypt-repo/v1 object key\0"
COMMITMENT_LABEL = b"encrypt-repo/v1 commitment\0"
FLAG_PATH_BOUND = 0x01


def hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_32(prk, info):
    # One HMAC block: HKDF-Expand(PRK, info, 32) = HMAC(PRK, info || 01) (FORMAT.md §1).
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


class Header:
    """A parsed header that passed checks 1-7 of FORMAT.md §2."""

    def __init__(self, raw):
        self.raw = bytes(raw[:H])
        self.exponent = raw[12]
        self.chunk_size = 1 << self.exponent
        self.path_bound = bool(raw[13] & FLAG_PATH_BOUND)
        self.data_key_id = self.raw[16:32]
        self.salt = self.raw[32:64]
        self.commitment = self.raw[64:96]


def parse_header(data):
    """FORMAT.md §2 checks 1-6, in order."""
    if len(data) < 10:
        raise Refused("truncated header", f"{len(data)} bytes")
    if data[0:8] != MAGIC:
        raise Refused("bad magic")
    version = int.from_bytes(data[8:10], "big")
    if version != 1:
        raise Refused("unsupported version", str(version))
    if len(data) < H:
        raise Refused("truncated header", f"{len(data)} bytes")
    suite = int.from_bytes(data[10:12], "big")
    if suite != 1:
        raise Refused("unsupported suite", str(suite))
    if not 16 <= data[12] <= 24:
        raise Refused("invalid chunk size", f"exponent {data[12]}")
    if data[13] & ~FLAG_PATH_BOUND or data[14:16] != b"\0\0":
        raise Refused("invalid flags")
    return Header(data)


def check_binding(header, expect_bound):
    """FORMAT.md §2 check 7."""
    if header.path_bound != expect_bound:
        raise Refused(
            "binding mismatch",
            f"object is {'' if header.path_bound else 'not '}path-bound, "
            f"the repository {'binds' if expect_bound else 'does not bind'} paths",
        )


def derive(header, data_key, repository_id, path):
    """FORMAT.md §3: (object key, commitment). `path` is bytes, or None when not path-bound."""
    prk = hkdf_extract(header.salt, data_key)
    digest = hashlib.sha256(path).digest() if header.path_bound else bytes(32)
    tail = header.raw[8:32] + repository_id + digest
    return hkdf_expand_32(prk, OBJECT_KEY_LABEL + tail), hkdf_expand_32(
        prk, COMMITMENT_LABEL + tail
    )


def open_header(data, data_key, repository_id, path, expect_bound):
    """Checks 1-8 of FORMAT.md §2; returns (header, AES-GCM under the object key)."""
    header = parse_header(data)
    check_binding(header, expect_bound)
    object_key, commitment = derive(header, data_key, repository_id, path)
    if not hmac.compare_digest(commitment, header.commitment):
        raise Refused("commitment mismatch")
    return header, AESGCM(object_key)


def nonce(index, final):
    return bytes(7) + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def open_chunk(aead, header, index, sealed, final):
    """FORMAT.md §4 check 13: one chunk, authenticated with the whole header as AAD."""
    try:
        return aead.decrypt(nonce(index, final), sealed, header.raw)
    except InvalidTag:
        raise Refused("authentication failed", f"chunk {index}") from None


def open_body(aead, header, body):
    """FORMAT.md §4 checks 9-13 over the whole body (everything after the header)."""
    s = header.chunk_size + T
    if not body:
        raise Refused("truncated", "no chunk after the header (chunk 0)")
    count = (len(body) + s - 1) // s
    last = count - 1
    tail = len(body) - last * s
    if tail < T:
        raise Refused("truncated", f"last chunk shorter than a tag (chunk {last})")
    if count > MAX_CHUNKS:
        raise Refused("too large", "more than 2^32 chunks")
    if tail == T and last != 0:
        raise Refused("authentication failed", f"empty final chunk after full chunks (chunk {last})")
    out = bytearray()
    for i in range(count):
        out += open_chunk(aead, header, i, body[i * s : (i + 1) * s], i == last)
    return bytes(out)


def plaintext_len(n, chunk_size):
    """FORMAT.md §5: the plaintext length L of an N-byte object, or `invalid ciphertext length`."""
    s = chunk_size + T
    if n < H + T:
        raise Refused("invalid ciphertext length", str(n))
    k, r = divmod(n - H, s)
    if r == 0 and k >= 1:
        length = k * chunk_size
    elif r == T and k == 0:
        length = 0
    elif r > T:
        length = k * chunk_size + r - T
    else:
        raise Refused("invalid ciphertext length", str(n))
    if length > MAX_CHUNKS * chunk_size:
        raise Refused("too large", "more than 2^32 chunks")
    return length


def range_plan(a, b, length, chunk_size):
    """FORMAT.md §6: (first, last, ciphertext start, ciphertext end, final included)."""
    s = chunk_size + T
    n = max(1, -(-length // chunk_size))
    first, last = a // chunk_size, (b - 1) // chunk_size
    end = min(H + (last + 1) * s, H + length + n * T)
    return first, last, H + first * s, end, last == n - 1


# ---------------------------------------------------------------------------------------------
# KEYS.md: key files (§4), fingerprints (§5), wraps (§6, §7).

LOCAL_FILE_MAGIC = "encrypt-repo-local-key-v1"
FINGERPRINT_LABEL = b"encrypt-repo/v1 key fingerprint"
WRAP_LABELS = {
    "local": b"encrypt-repo/v1 local wrap\0",
    "passphrase": b"encrypt-repo/v1 passphrase wrap\0",
}
OPENBAO_CONTEXT_LABEL = b"encrypt-repo/v1 openbao wrap\0"
WRAP_VERSION = 1
WRAPPED_LEN = 1 + 12 + 32 + 16
WHITESPACE = " \t\n\r\f\v\u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)


def parse_local_key_file(data):
    """KEYS.md §4: the 32-byte master key in a `local` key file's bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("malformed key file", "not UTF-8 text (a raw 32-byte key is not accepted)") from None
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if lines[0] != LOCAL_FILE_MAGIC:
        raise Refused("malformed key file", f"first line must be {LOCAL_FILE_MAGIC}")
    digits = (lines[1] if len(lines) > 1 else "").strip(WHITESPACE)
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", digits):
        raise Refused("malformed key file", "key line is not hex")
    if len(digits) != 64:
        raise Refused("malformed key file", "key must be 32 bytes (64 hex digits)")
    return bytes.fromhex(digits)


def local_key_file_text(key):
    """KEYS.md §4: the file a writer creates."""
    return f"{LOCAL_FILE_MAGIC}\n{key.hex()}\n".encode()


def fingerprint(kek):
    """KEYS.md §5: 16 lower-case hex digits."""
    return hmac.new(kek, FINGERPRINT_LABEL, hashlib.sha256).digest()[:8].hex()


def passphrase_bytes(raw):
    """KEYS.md §7.1: one trailing LF, then one CR before it, removed; empty is refused."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    if not raw:
        raise Refused("empty passphrase")
    return raw


def passphrase_kek(passphrase, salt, m_cost, t_cost, p_cost):
    """KEYS.md §7.2: Argon2id version 0x13, 32-byte output, no secret, no associated data."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(
        salt=salt, length=32, iterations=t_cost, lanes=p_cost, memory_cost=m_cost
    ).derive(passphrase)


def wrap_aad(label, repository_id, data_key_id):
    """KEYS.md §3: label || repository id || data-key id."""
    return label + repository_id + data_key_id


def wrap(provider, kek, data_key, repository_id, data_key_id, wrap_nonce):
    """KEYS.md §6: the 61-byte wrapped form (the generator of the test vectors uses this)."""
    aad = wrap_aad(WRAP_LABELS[provider], repository_id, data_key_id)
    return bytes([WRAP_VERSION]) + wrap_nonce + AESGCM(kek).encrypt(wrap_nonce, data_key, aad)


def unwrap(provider, kek, entry, repository_id, data_key_id):
    """KEYS.md §6.2: a keyring entry `{provider, master_key, ciphertext}` to the data key."""
    mine = fingerprint(kek)
    if entry.get("provider") != provider or entry.get("master_key") != mine:
        raise Refused(
            "foreign wrapped key",
            f"made by {entry.get('provider')} key {entry.get('master_key')}, "
            f"not by {provider} key {mine}",
        )
    c = unhex(entry.get("ciphertext"), "ciphertext")
    if len(c) != WRAPPED_LEN or c[0] != WRAP_VERSION:
        raise Refused("unwrap failed", f"data key {data_key_id.hex()}")
    aad = wrap_aad(WRAP_LABELS[provider], repository_id, data_key_id)
    try:
        return AESGCM(kek).decrypt(c[1:13], c[13:], aad)
    except InvalidTag:
        raise Refused("unwrap failed", f"data key {data_key_id.hex()}") from None


def unhex(value, what):
    if not isinstance(value, str) or not re.fullmatch(r"(?:[0-9a-fA-F]{2})*", value):
        raise Refused("corrupt metadata", f"{what} is not hex")
    return bytes.fromhex(value)


def openbao_context(repository_id, data_key_id):
    """KEYS.md §9: transit's derivation context, base64."""
    return base64.b64encode(wrap_aad(OPENBAO_CONTEXT_LABEL, repository_id, data_key_id)).decode()


# ---------------------------------------------------------------------------------------------
# A repository directory (KEYS.md §1, §2, §3).

RESERVED = ".encrypt-repo"
# object_store's LocalFileSystem writes uploads in progress to `NAME#<digits>` and never lists
# them as objects (KEYS.md §1).
IN_PROGRESS = re.compile(r"#[0-9]+$")


class Repository:
    def __init__(self, root):
        self.root = root
        path = os.path.join(root, RESERVED, "registration.json")
        try:
            with open(path, "rb") as f:
                self.registration = json.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"{path}: not an encrypt-repo repository") from None
        except ValueError as e:
            raise Refused("corrupt metadata", f"{path}: {e}") from None
        reg = self.registration
        if reg.get("format") != 1:
            raise Refused("corrupt metadata", f"registration format {reg.get('format')!r}")
        self.id = unhex(reg.get("repository_id"), "repository_id")
        if len(self.id) != 16:
            raise Refused("corrupt metadata", "repository_id is not 32 hex digits")
        self.encrypted = reg.get("encrypted") is True
        self.chunk_size = reg.get("chunk_size", 1 << 20)
        self.path_binding = reg.get("path_binding", True)
        self.keys = {}

    def providers(self):
        """(name, type, settings) of the main provider, then of each escrow provider."""
        main = self.registration.get("crypto_settings") or {}
        out = [main] if main else []
        out += self.registration.get("escrow", [])
        return [(p["key_provider_name"], p["key_provider_type"], p.get("settings", {})) for p in out]

    def record(self, data_key_id):
        path = os.path.join(self.root, RESERVED, "keyring", data_key_id.hex() + ".json")
        try:
            with open(path, "rb") as f:
                record = json.loads(f.read())
        except FileNotFoundError:
            raise Refused("missing data key", data_key_id.hex()) from None
        except ValueError as e:
            raise Refused("corrupt metadata", f"{path}: {e}") from None
        if record.get("data_key_id") != data_key_id.hex():
            raise Refused("corrupt metadata", f"{path} names data key {record.get('data_key_id')}")
        if record.get("shredded_unix") is not None:
            raise Refused("data key shredded", data_key_id.hex())
        return record

    def record_ids(self):
        folder = os.path.join(self.root, RESERVED, "keyring")
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        return [bytes.fromhex(n[:-5]) for n in names if re.fullmatch(r"[0-9a-f]{32}\.json", n)]

    def data_key(self, data_key_id, unlock):
        if data_key_id not in self.keys:
            self.keys[data_key_id] = unlock(self, data_key_id)
        return self.keys[data_key_id]

    def objects(self):
        """Object names (the bound paths, FORMAT.md §3) of every object, sorted by their bytes."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            if rel == ".":
                dirs[:] = [d for d in dirs if d != RESERVED]
            for name in files:
                if IN_PROGRESS.search(name):
                    continue
                full = name if rel == "." else os.path.join(rel, name)
                found.append(os.fsencode(full).replace(os.sep.encode(), b"/"))
        return sorted(found)

    def file_of(self, name):
        full = os.path.join(os.fsencode(self.root), *name.split(b"/"))
        if not os.path.isfile(full):
            raise NotFound(f"no object {name.decode(errors='replace')}")
        return full

    def _opened(self, name, f, unlock):
        # The store's order (FORMAT.md §9): checks 1-6, the registration's chunk size, the data
        # key, then checks 7-8.
        head = f.read(H)
        header = parse_header(head)
        if header.chunk_size != self.chunk_size:
            raise Refused(
                "chunk size mismatch",
                f"header says {header.chunk_size}, the registration {self.chunk_size}",
            )
        key = self.data_key(header.data_key_id, unlock)
        return open_header(head, key, self.id, name, self.path_binding)

    def read(self, name, unlock, byte_range=None):
        """The verified plaintext of object `name` (bytes), or of bytes [a, b) of it."""
        full = self.file_of(name)
        with open(full, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not self.encrypted:
                f.seek(byte_range[0] if byte_range else 0)
                return f.read((byte_range[1] - byte_range[0]) if byte_range else -1)
            # FORMAT.md §9 step 0: N is the stored size; C is the registration's chunk size.
            length = plaintext_len(size, self.chunk_size)
            header, aead = self._opened(name, f, unlock)
            if byte_range is None:
                return open_body(aead, header, f.read())
            a, b = byte_range
            if not 0 <= a <= b <= length:
                raise Refused("range out of bounds", f"{a}..{b} of {length} bytes")
            if a == b:
                return b""  # an empty range opens no chunk (FORMAT.md §6), after checks 1-8
            return read_range(f, aead, header, a, b, length)


def read_range(f, aead, header, a, b, length):
    """FORMAT.md §6: fetch and open only the chunks covering [a, b)."""
    c, s = header.chunk_size, header.chunk_size + T
    first, last, start, end, final = range_plan(a, b, length, c)
    f.seek(start)
    span = f.read(end - start)
    if len(span) != end - start:
        raise Refused("truncated", f"chunk {first + len(span) // s}")
    out = bytearray()
    for i in range(first, last + 1):
        sealed = span[(i - first) * s : (i - first + 1) * s]
        if i != last and len(sealed) != s:
            raise Refused("authentication failed", f"chunk {i}")
        out += open_chunk(aead, header, i, sealed, final and i == last)
    skip = a - first * c
    return bytes(out[skip : skip + (b - a)])


# ---------------------------------------------------------------------------------------------
# Unlocking: how a data key is obtained (KEYS.md §2, §6, §7; --data-key for KMS providers).


def unlock_with_kek(provider, kek):
    def unlock(repo, data_key_id):
        record = repo.record(data_key_id)
        # KEYS.md §2.2: `next` first, then every copy in `wrapped`, of this provider type.
        entries = ([record["next"]] if record.get("next") else []) + record.get("wrapped", [])
        entries = [e for e in entries if e.get("provider") == provider]
        if not entries:
            raise Refused("foreign wrapped key", f"no {provider} copy of data key {data_key_id.hex()}")
        failure = None
        for entry in entries:
            try:
                return unwrap(provider, kek, entry, repo.id, data_key_id)
            except Refused as e:
                failure = e
        raise failure

    return unlock


def unlock_with_data_keys(keys):
    def unlock(repo, data_key_id):
        repo.record(data_key_id)  # a shredded or missing record is still refused
        if data_key_id not in keys:
            raise Refused("missing data key", f"{data_key_id.hex()}: give it with --data-key")
        return keys[data_key_id]

    return unlock


def provider_settings(repo, escrow):
    for name, kind, settings in repo.providers():
        if (escrow is None and name == repo.providers()[0][0]) or name == escrow:
            return kind, settings
    raise Refused("unknown provider", f"no escrow provider named {escrow!r}")


def check_fingerprint(kind, settings, kek):
    """KEYS.md §5: the registered fingerprint, when there is one, must match."""
    registered = settings.get("fingerprint")
    if registered is not None and registered != fingerprint(kek):
        what = "wrong key file" if kind == "local" else "wrong passphrase"
        raise Refused("wrong master key", f"{what}: fingerprint {fingerprint(kek)}, registered {registered}")


def kek_from_passphrase(settings, raw):
    salt = unhex(settings.get("salt"), "salt")
    if len(salt) < 16:
        raise Refused("corrupt metadata", "salt must be at least 16 bytes")
    cost = [int(settings[k]) for k in ("m_cost", "t_cost", "p_cost")]
    return passphrase_kek(passphrase_bytes(raw), salt, *cost)


def unlocker(args, repo):
    if args.data_key:
        keys = {}
        for item in args.data_key:
            ident, _, value = item.partition("=")
            keys[unhex(ident, "--data-key id")] = unhex(value, "--data-key key")
        return unlock_with_data_keys(keys)
    kind, settings = provider_settings(repo, args.escrow)
    if args.key_file:
        if kind != "local":
            raise Refused("wrong provider", f"the repository's provider is {kind}, not local")
        with open(args.key_file, "rb") as f:
            kek = parse_local_key_file(f.read())
    elif args.passphrase_file or args.passphrase_env:
        if kind != "passphrase":
            raise Refused("wrong provider", f"the repository's provider is {kind}, not passphrase")
        if args.passphrase_file:
            with open(args.passphrase_file, "rb") as f:
                raw = f.read()
        else:
            raw = os.environb.get(os.fsencode(args.passphrase_env))
            if raw is None:
                raise Refused("empty passphrase", f"environment variable {args.passphrase_env} is not set")
        kek = kek_from_passphrase(settings, raw)
    else:
        raise Refused("no key", "give --key-file, --passphrase-file, --passphrase-env or --data-key")
    check_fingerprint(kind, settings, kek)
    return unlock_with_kek(kind, kek)


# ---------------------------------------------------------------------------------------------
# Test vectors: FORMAT's object vectors and KEYS' key vectors, in the files' own format.


def read_vector(path):
    """A vector file: `key: value` lines, an empty line, then the body (raw bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    text, sep, body = data.partition(b"\n\n")
    if not sep:
        raise ValueError(f"{path}: no empty line")
    fields = {}
    for line in text.decode("utf-8").split("\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"{path}: bad line {line!r}")
        fields.setdefault(key, []).append(value)
    return fields, body


def run_format_vector(path):
    """The outcome of one crates/format/testdata/vectors file, in its README's categories."""
    fields, obj = read_vector(path)
    allowed = {"expect", "comment", "data key", "data key id", "repository id", "path",
               "plaintext length", "plaintext sha256"}
    if set(fields) - allowed:
        raise ValueError(f"{path}: unknown keys {sorted(set(fields) - allowed)}")
    key = bytes.fromhex(fields["data key"][0])
    repo_id = bytes.fromhex(fields["repository id"][0])
    path_field = fields["path"][0]
    bound = path_field != "-"
    try:
        header, aead = open_header(obj, key, repo_id, path_field.encode() if bound else None, bound)
    except Refused as e:
        return "commitment failure" if e.name == "commitment mismatch" else "header failure", e
    try:
        plain = open_body(aead, header, obj[H:])
    except Refused as e:
        return "truncated" if e.name == "truncated" else "authentication failure", e
    if str(len(plain)) != fields["plaintext length"][0]:
        return "wrong length", None
    if hashlib.sha256(plain).hexdigest() != fields["plaintext sha256"][0]:
        return "wrong plaintext", None
    return "success", None


KEY_VECTOR_KEYS = ["expect", "comment", "provider", "key file", "passphrase", "registered settings",
                   "repository id", "data key id", "data key"]


def run_key_vector(path):
    """The outcome of one crates/keys/testdata/vectors file: (expect category, data key or error)."""
    fields, record_bytes = read_vector(path)
    if set(fields) - set(KEY_VECTOR_KEYS):
        raise ValueError(f"{path}: unknown keys {sorted(set(fields) - set(KEY_VECTOR_KEYS))}")
    provider = fields["provider"][0]
    settings = json.loads(fields["registered settings"][0])
    repo_id = bytes.fromhex(fields["repository id"][0])
    data_key_id = bytes.fromhex(fields["data key id"][0])
    try:
        if provider == "local":
            kek = parse_local_key_file(bytes.fromhex(fields["key file"][0]))
        else:
            kek = kek_from_passphrase(settings, bytes.fromhex(fields["passphrase"][0]))
        check_fingerprint(provider, settings, kek)
        record = json.loads(record_bytes)
        if record.get("data_key_id") != data_key_id.hex():
            raise Refused("corrupt metadata", "record names another data key")
        key = unlock_with_kek(provider, kek)(_OneRecord(record, repo_id), data_key_id)
    except Refused as e:
        return e.name, e
    return "success", key


class _OneRecord:
    """A stand-in repository holding one keyring record (for the key vectors)."""

    def __init__(self, record, repository_id):
        self.id = repository_id
        self._record = record

    def record(self, data_key_id):
        if self._record.get("shredded_unix") is not None:
            raise Refused("data key shredded", data_key_id.hex())
        return self._record


# ---------------------------------------------------------------------------------------------
# Command line.


def parse_range(text):
    """`A-B` (inclusive, as curl -r and encrypt-repo get -r) to a half-open [A, B+1)."""
    m = re.fullmatch(r"([0-9]+)-([0-9]+)", text)
    if not m or int(m[1]) > int(m[2]):
        raise argparse.ArgumentTypeError(f"range {text!r} is not START-END")
    return int(m[1]), int(m[2]) + 1


def object_name(typed):
    """The bound path of a typed object name, as encrypt-repo's CLI makes it (FORMAT.md §3.1)."""
    name = os.fsencode(typed)
    name = name[1:] if name.startswith(b"/") else name
    name = name[:-1] if name.endswith(b"/") else name
    for segment in name.split(b"/"):
        if segment in (b"", b".", b"..") or any(c < 0x20 or c == 0x7F for c in segment):
            raise Usage(f"invalid object name {typed!r}")
    return name


def kms_commands(repo, out):
    """KEYS.md §8, §9: one command per keyring record that unwraps its data key."""
    for data_key_id in repo.record_ids():
        try:
            record = repo.record(data_key_id)
        except Refused as e:
            print(f"# {data_key_id.hex()}: {e}", file=out)
            continue
        for entry in ([record["next"]] if record.get("next") else []) + record["wrapped"]:
            ident = data_key_id.hex()
            ctx = {"encrypt-repo:repository": repo.id.hex(), "encrypt-repo:data-key": ident}
            blob = bytes.fromhex(entry["ciphertext"])
            if entry["provider"] == "aws-kms":
                print(f"echo {ident}=$(echo {base64.b64encode(blob).decode()} | base64 -d > /tmp/{ident}.bin && "
                      f"aws kms decrypt --key-id {entry['master_key']} --ciphertext-blob fileb:///tmp/{ident}.bin "
                      f"--encryption-context '{json.dumps(ctx, separators=(',', ':'))}' "
                      f"--query Plaintext --output text | base64 -d | od -An -tx1 | tr -d ' \\n')", file=out)
            elif entry["provider"] == "openbao":
                mount, _, name = entry["master_key"].rpartition("/")
                print(f"echo {ident}=$(bao write -field=plaintext {mount}/decrypt/{name} "
                      f"ciphertext={blob.decode()} context={openbao_context(repo.id, data_key_id)} "
                      f"| base64 -d | od -An -tx1 | tr -d ' \\n')", file=out)
            else:
                print(f"# {ident}: {entry['provider']} copy: use --key-file / --passphrase-*", file=out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    keys = p.add_argument_group("the key (one of)")
    keys.add_argument("--key-file", help="a local provider's key file")
    keys.add_argument("--passphrase-file", help="a file holding the passphrase")
    keys.add_argument("--passphrase-env", help="an environment variable holding the passphrase")
    keys.add_argument("--data-key", action="append", metavar="ID=HEX",
                      help="an unwrapped data key (from kms-commands), repeatable")
    p.add_argument("--escrow", metavar="NAME", help="use this escrow provider's copy")
    p.add_argument("repo", help="the repository directory")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="check the key against the registration, list data keys")
    sub.add_parser("ls", help="list objects with their plaintext sizes (no key needed)")
    cat = sub.add_parser("cat", help="write one object's verified plaintext to stdout")
    cat.add_argument("object")
    cat.add_argument("-r", "--range", type=parse_range, help="inclusive byte range START-END")
    restore = sub.add_parser("restore", help="decrypt every object into a directory")
    restore.add_argument("dest")
    sub.add_parser("kms-commands", help="print the aws / bao commands that unwrap each data key")
    vec = sub.add_parser("vector", help="run test vector files (repo is their kind: format or keys)")
    vec.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    try:
        return run(args)
    except Refused as e:
        print(f"er_recover: refused: {e}", file=sys.stderr)
        return 1
    except Usage as e:
        print(f"er_recover: usage: {e}", file=sys.stderr)
        return 2
    except (NotFound, FileNotFoundError) as e:
        print(f"er_recover: not found: {e}", file=sys.stderr)
        return 3


def run(args):
    if args.command == "vector":
        runner = {"format": run_format_vector, "keys": run_key_vector}[args.repo]
        for path in args.files:
            outcome, detail = runner(path)
            if isinstance(detail, bytes):
                detail = detail.hex()
            print(f"{os.path.basename(path)}\t{outcome}\t{detail if detail is not None else ''}")
        return 0
    repo = Repository(args.repo)
    if args.command == "ls":
        for name in repo.objects():
            size = os.path.getsize(repo.file_of(name))
            length = plaintext_len(size, repo.chunk_size) if repo.encrypted else size
            print(f"{length}\t{name.decode('utf-8', errors='surrogateescape')}")
        return 0
    if args.command == "kms-commands":
        kms_commands(repo, sys.stdout)
        return 0
    unlock = unlocker(args, repo) if repo.encrypted else None
    if args.command == "info":
        for data_key_id in repo.record_ids():
            repo.data_key(data_key_id, unlock)
            print(f"data key {data_key_id.hex()}: unwrapped")
        return 0
    if args.command == "cat":
        name = object_name(args.object)
        sys.stdout.buffer.write(repo.read(name, unlock, args.range))
        return 0
    for name in repo.objects():  # restore
        target = os.path.join(os.fsencode(args.dest), *name.split(b"/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        data = repo.read(name, unlock)
        with open(target, "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
