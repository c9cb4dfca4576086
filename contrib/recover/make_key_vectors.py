#!/usr/bin/env python3
"""Writes crates/keys/testdata/vectors/ and the worked example of KEYS.md §11, from KEYS.md alone.

    python3 contrib/recover/make_key_vectors.py           # rewrite the files
    python3 contrib/recover/make_key_vectors.py --check   # fail if any file differs

Deterministic: fixed keys, fixed nonces, fixed salts. The Rust test `recover::key_vectors` opens
every file with the real providers (`crates/keys`) and checks the outcome; er_recover.py's
`vector keys` does the same. The data key, data-key id and repository id are those of the
format vectors (crates/format/testdata), so a recovered data key opens those objects.
"""

import json
import os
import sys

import er_recover as er

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "keys", "testdata", "vectors")
KEYS_MD = os.path.join(ROOT, "KEYS.md")

DATA_KEY = bytes(range(0x00, 0x20))
DATA_KEY_ID = bytes(range(0xA0, 0xB0))
REPOSITORY_ID = bytes(range(0x10, 0x20))
OTHER_REPOSITORY_ID = bytes(range(0x20, 0x30))
OTHER_DATA_KEY_ID = bytes(range(0xB0, 0xC0))
MASTER_KEY = bytes(range(0x40, 0x60))
OTHER_MASTER_KEY = bytes(range(0x60, 0x80))
NONCE = bytes(range(0xC0, 0xCC))
CREATED = 1764547200  # 2025-12-01T00:00:00Z
PASSPHRASE = b"correct horse battery staple"
SALT = bytes(range(0x50, 0x60))
DEFAULT_COST = {"m_cost": "19456", "t_cost": "2", "p_cost": "1"}
LOW_COST = {"m_cost": "64", "t_cost": "3", "p_cost": "2"}


def record(entries, data_key_id=DATA_KEY_ID, **extra):
    """A keyring record exactly as the store writes it (serde_json's pretty printer)."""
    value = {"data_key_id": data_key_id.hex(), "created_unix": CREATED, "wrapped": entries}
    value.update(extra)
    return json.dumps(value, indent=2).encode()


def entry(provider, kek, ciphertext):
    return {"provider": provider, "master_key": er.fingerprint(kek), "ciphertext": ciphertext.hex()}


def local_copy(kek=MASTER_KEY, repository_id=REPOSITORY_ID, data_key_id=DATA_KEY_ID, label="local"):
    c = er.wrap(label, kek, DATA_KEY, repository_id, data_key_id, NONCE)
    return entry("local", kek, c)


def flip(e, index):
    c = bytearray.fromhex(e["ciphertext"])
    c[index] ^= 0x01
    return dict(e, ciphertext=c.hex())


def passphrase_settings(kek, cost, with_fingerprint=True):
    s = dict(cost, salt=SALT.hex())
    if with_fingerprint:
        s["fingerprint"] = er.fingerprint(kek)
    return dict(sorted(s.items()))


def cases():
    key_file = er.local_key_file_text(MASTER_KEY)
    registered = {"fingerprint": er.fingerprint(MASTER_KEY)}
    good = local_copy()
    upper = f"{er.LOCAL_FILE_MAGIC}\r\n{MASTER_KEY.hex().upper()}\r\n".encode()
    plus = f"{er.LOCAL_FILE_MAGIC}\n+0{MASTER_KEY.hex()[2:]}\n".encode()
    not_utf8 = bytes([0xFF]) + MASTER_KEY[1:]
    other_file = er.local_key_file_text(OTHER_MASTER_KEY)
    shredded = record([], shredded_unix=CREATED + 60)
    rewrap_old = {"provider": "aws-kms", "master_key": "arn:aws:kms:eu-west-1:111122223333:key/"
                  "1234abcd-12ab-34cd-56ef-1234567890ab", "ciphertext": bytes(range(0, 184)).hex()}

    yield "valid_local", "success", {"comment": ["the key file as `encrypt-repo init` writes it"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, record([good])
    yield "valid_local_crlf_uppercase", "success", \
        {"comment": ["CRLF line ends and upper-case hex digits (KEYS.md §4: accepted)"]}, \
        {"provider": "local", "key file": upper, "registered settings": registered}, record([good])
    yield "valid_local_no_final_newline", "success", {"comment": ["no newline after the key line"]}, \
        {"provider": "local", "key file": key_file[:-1], "registered settings": registered}, record([good])
    yield "valid_local_second_copy", "success", \
        {"comment": ["wrapped[0] is another local key's copy (an escrow provider's, say); "
                     "wrapped[1] is this key's: every copy of the provider type is tried"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([local_copy(kek=OTHER_MASTER_KEY), good])
    yield "valid_local_rewrap_next", "success", \
        {"comment": ["a re-wrap from aws-kms to this local key under way: the local copy is in `next`"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([rewrap_old], next=good)
    yield "local_raw_key", "malformed key file", \
        {"comment": ["the key file holds the 32 raw key bytes (here all valid UTF-8): refused"]}, \
        {"provider": "local", "key file": MASTER_KEY, "registered settings": registered}, record([good])
    yield "local_raw_key_not_utf8", "malformed key file", \
        {"comment": ["32 raw bytes that are not UTF-8: refused"]}, \
        {"provider": "local", "key file": not_utf8, "registered settings": registered}, record([good])
    yield "local_short_key", "malformed key file", {"comment": ["62 hex digits"]}, \
        {"provider": "local", "key file": key_file.replace(b"5e5f\n", b"5e\n"),
         "registered settings": registered}, record([good])
    yield "local_wrong_magic", "malformed key file", {"comment": ["first line ...-v2"]}, \
        {"provider": "local", "key file": key_file.replace(b"-v1", b"-v2"),
         "registered settings": registered}, record([good])
    yield "local_plus_sign", "malformed key file", \
        {"comment": ["first hex pair written `+0`: not two hex digits"]}, \
        {"provider": "local", "key file": plus, "registered settings": {}}, record([good])
    yield "local_wrong_key_file", "wrong master key", \
        {"comment": ["another key file; the registration's fingerprint is the right key's"]}, \
        {"provider": "local", "key file": other_file, "registered settings": registered}, record([good])
    yield "local_foreign_record", "foreign wrapped key", \
        {"comment": ["another key file and no registered fingerprint: the record's master_key "
                     "(the fingerprint of the key that wrapped it) is not this key's"]}, \
        {"provider": "local", "key file": other_file, "registered settings": {}}, record([good])
    yield "local_flipped_ciphertext", "unwrap failed", {"comment": ["ciphertext byte 20 flipped"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([flip(good, 20)])
    yield "local_flipped_nonce", "unwrap failed", {"comment": ["nonce byte 1 flipped"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([flip(good, 1)])
    yield "local_flipped_tag", "unwrap failed", {"comment": ["last tag byte flipped"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([flip(good, 60)])
    yield "local_bad_wrap_version", "unwrap failed", {"comment": ["wrap version byte 02"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([dict(good, ciphertext="02" + good["ciphertext"][2:])])
    yield "local_truncated_wrap", "unwrap failed", {"comment": ["60 bytes: the last tag byte cut"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([dict(good, ciphertext=good["ciphertext"][:-2])])
    yield "local_wrong_repository", "unwrap failed", \
        {"comment": [f"wrapped in repository {OTHER_REPOSITORY_ID.hex()} (a record copied from there)"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([local_copy(repository_id=OTHER_REPOSITORY_ID)])
    yield "local_renamed_record", "unwrap failed", \
        {"comment": [f"wrapped for data key {OTHER_DATA_KEY_ID.hex()}, stored as {DATA_KEY_ID.hex()}"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([local_copy(data_key_id=OTHER_DATA_KEY_ID)])
    yield "local_passphrase_label", "unwrap failed", \
        {"comment": ["wrapped under this key with the passphrase provider's label"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([local_copy(label="passphrase")])
    yield "local_shredded", "data key shredded", {"comment": ["a shredded record: no copies left"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, shredded
    yield "local_bad_hex", "corrupt metadata", {"comment": ["ciphertext has an odd number of digits"]}, \
        {"provider": "local", "key file": key_file, "registered settings": registered}, \
        record([dict(good, ciphertext=good["ciphertext"] + "0")])

    kek = er.passphrase_kek(PASSPHRASE, SALT, 19456, 2, 1)
    low = er.passphrase_kek(b"pw", SALT, 64, 3, 2)
    wrapped = entry("passphrase", kek, er.wrap("passphrase", kek, DATA_KEY, REPOSITORY_ID, DATA_KEY_ID, NONCE))
    low_wrapped = entry("passphrase", low, er.wrap("passphrase", low, DATA_KEY, REPOSITORY_ID, DATA_KEY_ID, NONCE))
    default = passphrase_settings(kek, DEFAULT_COST)
    lows = passphrase_settings(low, LOW_COST)
    yield "valid_passphrase", "success", \
        {"comment": ["default costs; the secret as read ends in one LF, which is not part of it"]}, \
        {"provider": "passphrase", "passphrase": PASSPHRASE + b"\n", "registered settings": default}, \
        record([wrapped])
    yield "valid_passphrase_low_cost_crlf", "success", \
        {"comment": ["m_cost 64, t_cost 3, p_cost 2 from the registration; CRLF removed"]}, \
        {"provider": "passphrase", "passphrase": b"pw\r\n", "registered settings": lows}, \
        record([low_wrapped])
    yield "passphrase_wrong", "wrong master key", {"comment": ["another passphrase"]}, \
        {"provider": "passphrase", "passphrase": b"Correct horse battery staple",
         "registered settings": default}, record([wrapped])
    yield "passphrase_two_newlines", "wrong master key", \
        {"comment": ["`pw` followed by two LFs: only one is removed, so the passphrase is `pw\\n`"]}, \
        {"provider": "passphrase", "passphrase": b"pw\n\n", "registered settings": lows}, \
        record([low_wrapped])
    yield "passphrase_wrong_no_fingerprint", "foreign wrapped key", \
        {"comment": ["another passphrase, no registered fingerprint: the record's master_key differs"]}, \
        {"provider": "passphrase", "passphrase": b"pW",
         "registered settings": passphrase_settings(low, LOW_COST, with_fingerprint=False)}, \
        record([low_wrapped])
    yield "passphrase_flipped_ciphertext", "unwrap failed", {"comment": ["ciphertext byte 30 flipped"]}, \
        {"provider": "passphrase", "passphrase": b"pw", "registered settings": lows}, \
        record([flip(low_wrapped, 30)])
    yield "passphrase_no_copy", "foreign wrapped key", \
        {"comment": ["the record holds only a local copy"]}, \
        {"provider": "passphrase", "passphrase": b"pw", "registered settings": lows}, record([good])
    yield "passphrase_empty", "empty passphrase", {"comment": ["the secret is one LF"]}, \
        {"provider": "passphrase", "passphrase": b"\n", "registered settings": lows}, record([low_wrapped])


def render(expect, extra, fields, body):
    lines = [f"expect: {expect}"] + [f"comment: {c}" for c in extra["comment"]]
    lines.append(f"provider: {fields['provider']}")
    if "key file" in fields:
        lines.append(f"key file: {fields['key file'].hex()}")
    if "passphrase" in fields:
        lines.append(f"passphrase: {fields['passphrase'].hex()}")
    lines.append(f"registered settings: {json.dumps(fields['registered settings'], separators=(',', ':'))}")
    lines.append(f"repository id: {REPOSITORY_ID.hex()}")
    lines.append(f"data key id: {DATA_KEY_ID.hex()}")
    if expect == "success":
        lines.append(f"data key: {DATA_KEY.hex()}")
    return ("\n".join(lines) + "\n\n").encode() + body


def worked_example():
    """KEYS.md §11, from the same inputs as valid_local and valid_passphrase."""
    aad = er.wrap_aad(er.WRAP_LABELS["local"], REPOSITORY_ID, DATA_KEY_ID)
    c = er.wrap("local", MASTER_KEY, DATA_KEY, REPOSITORY_ID, DATA_KEY_ID, NONCE)
    kek = er.passphrase_kek(PASSPHRASE, SALT, 19456, 2, 1)
    pc = er.wrap("passphrase", kek, DATA_KEY, REPOSITORY_ID, DATA_KEY_ID, NONCE)
    ob = er.wrap_aad(er.OPENBAO_CONTEXT_LABEL, REPOSITORY_ID, DATA_KEY_ID)
    rows = [
        ("repository id (16)", REPOSITORY_ID.hex()),
        ("data-key id (16)", DATA_KEY_ID.hex()),
        ("data key (32)", DATA_KEY.hex()),
        ("wrap nonce (12)", NONCE.hex()),
        ("", ""),
        ("local master key", MASTER_KEY.hex()),
        ("key file (text)", er.local_key_file_text(MASTER_KEY).decode().replace("\n", "\\n")),
        ("fingerprint", er.fingerprint(MASTER_KEY)),
        ("AAD (59)", aad.hex()),
        ("ciphertext (61)", c.hex()),
        ("", ""),
        ("passphrase", PASSPHRASE.decode()),
        ("salt (16)", SALT.hex()),
        ("Argon2id m,t,p", "19456 KiB, 2, 1"),
        ("KEK", kek.hex()),
        ("fingerprint", er.fingerprint(kek)),
        ("AAD (64)", er.wrap_aad(er.WRAP_LABELS["passphrase"], REPOSITORY_ID, DATA_KEY_ID).hex()),
        ("ciphertext (61)", pc.hex()),
        ("", ""),
        ("openbao context (61)", ob.hex()),
        ("  as base64", er.openbao_context(REPOSITORY_ID, DATA_KEY_ID)),
    ]
    text = "\n".join(f"{k:<21}{v}".rstrip() for k, v in rows)
    return f"```text\n{text}\n```\n"


BEGIN = "<!-- key-example:begin (generated by contrib/recover/make_key_vectors.py) -->\n"
END = "<!-- key-example:end -->"


def main():
    check = sys.argv[1:] == ["--check"]
    wanted = {name: render(expect, extra, fields, body) for name, expect, extra, fields, body in cases()}
    problems = []
    os.makedirs(OUT, exist_ok=True)
    present = set(os.listdir(OUT))
    for name in sorted(present - set(wanted)):
        problems.append(f"{name}: not a vector the generator makes")
    for name, data in wanted.items():
        path = os.path.join(OUT, name)
        if check:
            if not os.path.exists(path) or open(path, "rb").read() != data:
                problems.append(f"{name}: differs from what the generator makes")
        else:
            with open(path, "wb") as f:
                f.write(data)
    with open(KEYS_MD, encoding="utf-8") as f:
        md = f.read()
    head, sep, rest = md.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not (sep and sep2):
        problems.append("KEYS.md: no key-example markers")
    else:
        new = head + BEGIN + worked_example() + END + tail
        if check and new != md:
            problems.append("KEYS.md: the worked example differs from what the generator makes")
        elif not check:
            with open(KEYS_MD, "w", encoding="utf-8") as f:
                f.write(new)
    for p in problems:
        print(f"make_key_vectors: {p}", file=sys.stderr)
    return 1 if problems and (check or present - set(wanted)) else 0


if __name__ == "__main__":
    sys.exit(main())
