#!/usr/bin/env bash
# How tests/golden/v1/ was written (once, by format version 1 of encrypt-repo, 2026-12-03).
# Do not re-run to "update" it: the point of a golden repository is that it never changes, and
# every later build must read it byte-exact (tests/golden.rs). A new format version gets a new
# directory (v2/) written by that version, next to this one.
#
#   bash tests/golden/make.sh target/debug/encrypt-repo tests/golden/v1
set -euo pipefail
er=$(realpath "$1")
mkdir -p "$2" && cd "$2"
[[ -e local ]] && { echo "$2 already holds a golden repository" >&2; exit 1; }
mkdir -p tree/sub
printf 'golden notes\n' > tree/notes.txt
python3 - <<'PY'
x, out = 1, bytearray()
while len(out) < 140000:
    x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
    out += x.to_bytes(8, "little")
open("tree/sub/data.bin", "wb").write(out[:140000])
open("tree/sub/edge-65536.bin", "wb").write(out[:65536])
PY
: > tree/empty
printf 'golden passphrase, not secret\n' > passphrase.txt
chmod 600 passphrase.txt
# Local key, 64 KiB chunks, bound paths: objects put one by one, and a backup snapshot.
"$er" init local --key-provider local --key-setting key_file=local.key --chunk-size 64KiB
"$er" put local docs/readme.txt tree/notes.txt --key-setting key_file=local.key
"$er" put local data/140000.bin tree/sub/data.bin --key-setting key_file=local.key
"$er" put local empty tree/empty --key-setting key_file=local.key
"$er" backup tree local --key-setting key_file=local.key
# Passphrase, default chunk size, paths not bound.
"$er" init pass --key-provider passphrase --key-setting passphrase_file=passphrase.txt --no-path-binding
"$er" put pass notes.txt tree/notes.txt --key-setting passphrase_file=passphrase.txt
"$er" put pass data.bin tree/sub/data.bin --key-setting passphrase_file=passphrase.txt
