#!/usr/bin/env bash
# Local test services, on loopback only: S3 (moto) and Azure Blob (azurite).
#
#   bash tests/services.sh start   install what is missing (inside the project), start both on
#                                  free ports, wait until they answer, write target/services.env
#   bash tests/services.sh stop    stop what `start` started (by PID)
#   bash tests/services.sh status  say whether each service is running
#   bash tests/services.sh env     print target/services.env (for `source`)
#
# After `start`:  source target/services.env   (then `cargo test -p encrypt-repo-store --test cloud`)
#
# Installs go to .venv/ (moto, via pip) and node_modules/ (azurite, via npm) at the repository
# root; both are gitignored. Needs only python3 (with venv and pip), node 20 + npm, curl.
# `start` is idempotent: services already running and answering are kept as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

MOTO_SPEC=${MOTO_SPEC:-"moto[server]==5.2.5"}
AZURITE_SPEC=${AZURITE_SPEC:-"azurite@3.35.0"} # 3.37 needs node 22; the machines have node 20
READY_TIMEOUT=${SERVICES_READY_TIMEOUT:-90}    # seconds per service

state=$root/target/services
env_file=$root/target/services.env
services=(moto azurite)

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

install_moto() {
    if [[ -x .venv/bin/moto_server ]] && .venv/bin/python -c 'import moto.server' 2>/dev/null; then
        return
    fi
    say "installing $MOTO_SPEC into .venv"
    if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import sys' 2>/dev/null; then
        rm -rf .venv
        python3 -m venv .venv || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
    .venv/bin/python -m pip install --quiet "$MOTO_SPEC" ||
        die "pip install '$MOTO_SPEC' failed"
    [[ -x .venv/bin/moto_server ]] || die ".venv/bin/moto_server missing after install"
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
    until answers "$port"; do
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

start_azurite() {
    local port
    port=$(free_port)
    launch azurite "$port" "$root/node_modules/.bin/azurite-blob" \
        --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence --disableTelemetry \
        --skipApiVersionCheck --loose
}

write_env() {
    local s3 az
    s3=http://127.0.0.1:$(port_of moto)
    az=http://127.0.0.1:$(port_of azurite)
    cat >"$env_file.tmp" <<EOF
# Written by tests/services.sh start; source it: . target/services.env
export ENCRYPT_REPO_TEST_S3_ENDPOINT=$s3
export ENCRYPT_REPO_TEST_AZURE_ENDPOINT=$az
# object_store's Azure client in emulator mode takes azurite's address only from this variable.
export AZURITE_BLOB_STORAGE_URL=$az
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
}

cmd_start() {
    local t0=$SECONDS name started=()
    mkdir -p "$state"
    command -v curl >/dev/null || die "curl not found"
    install_moto
    install_azurite
    for name in "${services[@]}"; do
        if pid_of "$name" >/dev/null && [[ -n $(port_of "$name") ]] && answers "$(port_of "$name")"; then
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
*)
    echo "usage: bash tests/services.sh start|stop|status|env" >&2
    exit 2
    ;;
esac
