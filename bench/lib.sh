# shellcheck shell=bash
# Shared by the whole-system benchmarks (sourced, not run): logging, cleanup of the
# processes in PIDS and of the scratch directory TMP on exit, and small helpers.
# Callers set -euo pipefail themselves; only loopback addresses are used.

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] error: $*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
PIDS=()
TMP=""
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        if [[ "${KEEP_TMP:-0}" == 1 ]]; then
            log "kept $TMP"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# wait_http URL SECONDS: until URL answers with any HTTP status
wait_http() {
    local url="$1" secs="$2" i
    for ((i = 0; i < secs * 10; i++)); do
        if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
        sleep 0.1
    done
    return 1
}

apt_install() { # apt_install PACKAGE: install a Debian package (needs root)
    log "installing Debian package $1"
    if [[ ! -f /tmp/.arca-bench-apt-updated ]]; then
        apt-get update -qq >&2 && touch /tmp/.arca-bench-apt-updated
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}
