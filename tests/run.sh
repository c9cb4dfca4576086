#!/usr/bin/env bash
# The whole test suite, as the README gives it and as CI runs it (.ci/run calls this script).
# It installs what it needs itself; nothing has to be installed by hand first.
#
#   bash tests/run.sh            everything
#   bash tests/run.sh --quick    skip the fuzz-target build
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1

step() { printf '\n==> %s\n' "$*" >&2; }

# A from-scratch build gains nothing from incremental compilation, and its caches took 4.5 GB of a
# CI machine's disk; a developer who reruns this script often can set CARGO_INCREMENTAL=1.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
disk() { printf 'disk: %s free, target/ %s\n' "$(df -h --output=avail . | tail -1 | tr -d ' ')" \
    "$(du -sh target 2>/dev/null | cut -f1)" >&2; }
disk

step "format check"
cargo fmt --all --check

step "clippy (warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "local services: S3 (moto), Azure Blob (azurite) and OpenBao transit, loopback only"
# Installed into .venv/ and node_modules/ if missing; stopped by PID when this script exits.
trap 'bash tests/services.sh stop' EXIT
bash tests/services.sh start
# shellcheck source=/dev/null
source target/services.env
export ENCRYPT_REPO_TEST_S3_ENDPOINT ENCRYPT_REPO_TEST_AZURE_ENDPOINT AZURITE_BLOB_STORAGE_URL \
    ENCRYPT_REPO_TEST_OPENBAO_ADDR ENCRYPT_REPO_TEST_OPENBAO_TOKEN_FILE

step "tests (workspace)"
# CI keeps only the tail of the output: on failure, repeat what failed (each failing test's
# name and panic message) at the end, where it is seen.
if ! cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee target/test-output.log; then
    step "failed tests (repeated from above)"
    grep -E -A12 '^---- .* stdout ----$' target/test-output.log | head -300 >&2 || true
    grep -E '^test .* FAILED$|^error: [0-9]+ targets? failed|^    `' target/test-output.log >&2 || true
    exit 101
fi
cargo test --workspace --doc --locked

step "docs (broken links and missing docs denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

if [[ $quick == 0 ]]; then
    step "fuzz targets build"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install cargo-fuzz --version 0.13.2 --locked
    fi
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --release)
fi

disk
step "all test steps passed"
