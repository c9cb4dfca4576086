#!/usr/bin/env bash
# Side-by-side throughput and peak memory of encrypt-repo and its peers on one file, same run:
# `cp`, `encrypt-repo put` into a local repository, `encrypt-repo get` back, `age -r`, an rclone
# crypt remote copy, and a restic backup. Tools run in alternation (one of each per round), after a
# warm-up round, each under /usr/bin/time -v; the table gives medians over the rounds.
#
#   bash benches/peers.sh                 1 GiB file, 5 rounds, work files in target/peers/
#   PEERS_SIZE_MIB=256 PEERS_ROUNDS=3 bash benches/peers.sh
#
# Installs age, rclone and restic from Debian packages when missing (needs root or sudo), builds
# encrypt-repo in release mode, and prints Markdown tables (also written to target/peers/peers.md).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${PEERS_SIZE_MIB:-1024}
rounds=${PEERS_ROUNDS:-5}
work=${PEERS_DIR:-$PWD/target/peers}

say() { printf 'peers: %s\n' "$*" >&2; }

missing=()
for tool in age rclone restic; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]} from Debian packages"
    sudo_=""
    [[ $(id -u) == 0 ]] || sudo_=sudo
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[[ -x /usr/bin/time ]] || { say "installing GNU time"; apt-get install -y -qq time >/dev/null; }

say "building encrypt-repo (release)"
cargo build --release --quiet --bin encrypt-repo
er=$PWD/target/release/encrypt-repo

rm -rf "$work"
mkdir -p "$work"
input=$work/input.bin
say "creating a ${size_mib} MiB random file"
head -c $((size_mib << 20)) /dev/urandom >"$input"

# One-time setup, outside the timings.
age-keygen -o "$work/age.key" 2>/dev/null
recipient=$(age-keygen -y "$work/age.key")
"$er" -q init "$work/er-repo" --key-provider local --key-setting "key_file=$work/er.key" 2>/dev/null
export RCLONE_CONFIG_PLAIN_TYPE=local
export RCLONE_CONFIG_SECRET_TYPE=crypt
export RCLONE_CONFIG_SECRET_REMOTE="plain:$work/rclone"
RCLONE_CONFIG_SECRET_PASSWORD=$(rclone obscure "peers-benchmark-password")
export RCLONE_CONFIG_SECRET_PASSWORD
export RESTIC_PASSWORD=peers-benchmark-password

# Each tool: a preparation (untimed) and the timed command.
prep() {
    case $1 in
    cp) rm -f "$work/cp.out" ;;
    cp-sync) rm -f "$work/cps.out" ;;
    dd) rm -f "$work/dd.out" ;;
    er-put) rm -rf "$work/er-repo/bench" ;; # like cp's: no old copy to truncate in the timed part
    er-get) rm -f "$work/er.out" ;;
    er-get-pipe) rm -f "$work/er-pipe.out" ;;
    age) rm -f "$work/out.age" ;;
    rclone) rm -rf "$work/rclone" ;;
    restic) rm -rf "$work/restic" && restic init -q --repo "$work/restic" >/dev/null ;;
    esac
}
timed() {
    case $1 in
    cp) cp "$input" "$work/cp.out" ;;
    # `get` makes its output durable (fsync before the rename); this is cp held to the same.
    cp-sync) cp "$input" "$work/cps.out" && sync ;;
    # The cheapest copy through user space (read + write, 4 MiB blocks): what any tool that
    # transforms the bytes pays at least; cp copies inside the kernel (copy_file_range).
    dd) dd if="$input" of="$work/dd.out" bs=4M status=none ;;
    er-put) "$er" -q put "$work/er-repo" bench/input.bin "$input" --key-setting "key_file=$work/er.key" ;;
    er-get) "$er" -q get "$work/er-repo" bench/input.bin "$work/er.out" --key-setting "key_file=$work/er.key" ;;
    # The same get to standard output redirected into a file: no temporary file, no fsync — the
    # decryption side alone, held to what plain cp leaves behind (bytes in the page cache).
    er-get-pipe) "$er" -q get "$work/er-repo" bench/input.bin - --key-setting "key_file=$work/er.key" >"$work/er-pipe.out" ;;
    age) age -r "$recipient" -o "$work/out.age" "$input" ;;
    rclone) rclone copy "$input" secret: ;;
    restic) restic -q --repo "$work/restic" backup "$input" >/dev/null ;;
    esac
}
tools=(cp cp-sync dd er-put er-get er-get-pipe age rclone restic)
export -f timed
export work input er recipient

csv=$work/runs.csv
echo "round,tool,seconds,max_rss_kib" >"$csv"
for round in $(seq 0 "$rounds"); do
    for tool in "${tools[@]}"; do
        prep "$tool"
        sync
        /usr/bin/time -v -o "$work/time.txt" bash -c "timed $tool"
        secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time.txt")
        rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
        # Round 0 is the warm-up.
        if ((round > 0)); then echo "$round,$tool,$secs,$rss" >>"$csv"; fi
        say "round $round $tool ${secs}s ${rss} KiB"
    done
done
cmp "$input" "$work/er.out" || { say "encrypt-repo get returned other bytes"; exit 1; }
cmp "$input" "$work/er-pipe.out" || { say "encrypt-repo get - returned other bytes"; exit 1; }

python3 - "$csv" "$size_mib" "$rounds" <<'PY' | tee "$work/peers.md"
import csv, statistics, sys
path, mib, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = list(csv.DictReader(open(path)))
names = {"cp": "cp", "cp-sync": "cp + sync", "dd": "dd bs=4M", "er-put": "encrypt-repo put", "er-get": "encrypt-repo get", "er-get-pipe": "encrypt-repo get - > file (no fsync)", "age": "age -r",
         "rclone": "rclone crypt copy", "restic": "restic backup"}
med = {}
for t in names:
    s = [float(r["seconds"]) for r in rows if r["tool"] == t]
    m = [int(r["max_rss_kib"]) for r in rows if r["tool"] == t]
    med[t] = (statistics.median(s), min(s), max(s), statistics.median(m))
print(f"{mib} MiB random file, {rounds} rounds after a warm-up, tools in alternation; medians.\n")
print("| tool | seconds (min–max) | MiB/s | peak RSS MiB | × cp | encrypt-repo put × this |")
print("|---|---:|---:|---:|---:|---:|")
put = mib / med["er-put"][0]
cp = mib / med["cp"][0]
for t, n in names.items():
    s, lo, hi, rss = med[t]
    tp = mib / s
    print(f"| {n} | {s:.2f} ({lo:.2f}–{hi:.2f}) | {tp:.0f} | {rss/1024:.0f} | {tp/cp:.2f} | {put/tp:.2f} |")
tp = {t: mib / med[t][0] for t in names}
print("\n| target (issue 6) | measured |")
print("|---|---:|")
for label, value in [
    ("put ≥ 0.85 × cp", tp["er-put"] / tp["cp"]),
    ("get ≥ 0.85 × cp", tp["er-get"] / tp["cp"]),
    ("get ≥ 0.85 × cp + sync (both durable)", tp["er-get"] / tp["cp-sync"]),
    ("(info) get - > file (neither durable) ÷ cp", tp["er-get-pipe"] / tp["cp"]),
    ("(info) put ÷ dd bs=4M (user-space copy)", tp["er-put"] / tp["dd"]),
    ("put ≥ 2 × age", tp["er-put"] / tp["age"]),
    ("put ≥ 5 × rclone crypt", tp["er-put"] / tp["rclone"]),
    ("put ≥ 5 × restic", tp["er-put"] / tp["restic"]),
]:
    print(f"| {label} | {value:.2f} |")
PY
