#!/usr/bin/env bash
# Builds the seed corpus of every fuzz target from the format test vectors
# (crates/format/testdata/vectors, see crates/format/testdata/README.md).
#
# Each vector file is text lines, an empty line, then the raw object bytes; the seeds are the
# object bytes, with the parameter prefix each target expects (see the target's doc comment).
# Writes fuzz/corpus/<target>/ (gitignored). Safe to re-run: existing seeds are overwritten,
# corpus entries found by fuzzing are kept.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
vectors="$here/../crates/format/testdata/vectors"
corpus="$here/corpus"

# The object bytes of a vector file: everything after the first empty line.
object() {
    local text_len
    text_len=$(sed -n '1,/^$/p' "$1" | wc -c)
    tail -c "+$((text_len + 1))" "$1"
}

# seed TARGET NAME PREFIX(printf format) VECTOR
seed() {
    mkdir -p "$corpus/$1"
    { printf "$3"; object "$4"; } > "$corpus/$1/$2"
}

count=0
for f in "$vectors"/*; do
    v=$(basename "$f")
    # header_roundtrip reads only the first 96 bytes: keep its inputs short.
    mkdir -p "$corpus/header_roundtrip"
    head -c 112 < <(object "$f") > "$corpus/header_roundtrip/$v"
    seed open_object "$v" '' "$f"
    # open_range: start u32 LE, end u32 LE, flags, 7 unused bytes.
    seed open_range "$v-last-byte" '\x01\x00\x00\x00\x00\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00' "$f"
    seed open_range "$v-whole" '\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00' "$f"
    seed open_range "$v-chunk-edge" '\xff\xff\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00' "$f"
    seed open_range "$v-whole-recommit" '\x00\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00' "$f"
    # stream_decrypt: batch byte, flags, 6 bytes of piece-size seed.
    seed stream_decrypt "$v-batch1" '\x00\x00\x01\x02\x03\x04\x05\x06' "$f"
    seed stream_decrypt "$v-batch4" '\x03\x00\x2a\x00\x00\x00\x00\x00' "$f"
    seed stream_decrypt "$v-batch2-recommit" '\x01\x01\x07\x07\x07\x07\x07\x07' "$f"
    count=$((count + 1))
done
[ "$count" -gt 0 ] || { echo "no vectors in $vectors" >&2; exit 1; }
echo "seeded $count vectors into $corpus/{header_roundtrip,open_object,open_range,stream_decrypt}"
