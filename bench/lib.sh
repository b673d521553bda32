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

# start_nginx WORKERS WORKER_CONNECTIONS [EXTRA_HTTP_DIRECTIVES]: nginx (installed with apt if
# missing) serving $TMP/www as static files on a free loopback port, its files under
# $TMP/nginx. Sets NGINX (the binary), NGINX_VERSION, NPORT, NGINX_PID (in PIDS) and N (its
# directory); returns once it answers (bounded).
start_nginx() {
    local workers="$1" conns="$2" extra="${3:-}" user_line=""
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x "$NGINX" ]] || { apt_install nginx; NGINX=/usr/sbin/nginx; }
    # shellcheck disable=SC2034 # used by the scripts that source this file
    NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')
    NPORT=$(free_port)
    N="$TMP/nginx"
    mkdir -p "$N/tmp"
    [[ $EUID -eq 0 ]] && user_line="user root;" # workers must read the 0700 scratch dir
    cat >"$N/nginx.conf" <<EOF
$user_line
daemon off;
worker_processes $workers;
pid $N/nginx.pid;
error_log $N/error.log;
events { worker_connections $conns; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    $extra
    default_type application/octet-stream;
    client_body_temp_path $N/tmp/body;
    proxy_temp_path $N/tmp/proxy;
    fastcgi_temp_path $N/tmp/fastcgi;
    uwsgi_temp_path $N/tmp/uwsgi;
    scgi_temp_path $N/tmp/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        root $TMP/www;
    }
}
EOF
    "$NGINX" -e "$N/error.log" -p "$N" -c "$N/nginx.conf" </dev/null >"$N/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NPORT/" 30 \
        || { cat "$N/error.log" "$N/stdout.log" >&2; die "nginx did not answer within 30 s"; }
}
