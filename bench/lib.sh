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
# bench_args SCRIPT ARGS...: sets JSON=1 for --json; -h/--help prints SCRIPT's header comment
# (from its second line to the first line that is not a comment) and exits.
JSON=0
bench_args() {
    local script="$1" arg
    shift
    for arg in "$@"; do
        case "$arg" in
            --json) JSON=1 ;;
            -h|--help) sed -n '2,/^[^#]/{/^#/!d;s/^# \{0,1\}//;p}' "$script"; exit 0 ;;
            *) echo "$(basename "$script"): unknown argument: $arg" >&2; exit 2 ;;
        esac
    done
}

CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID...: user + system clock ticks used so far by these processes (all threads; 0
# for one that is gone)
cpu_ticks() {
    local pid sum=0 t
    for pid in "$@"; do
        # Fields after the ")" that ends the command name: utime and stime are the 12th and 13th.
        t=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || t=0
        sum=$((sum + ${t:-0}))
    done
    echo "$sum"
}

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

# make_tls_cert DIR: a test CA (DIR/ca.pem) and a certificate for 127.0.0.1 and localhost
# signed by it (DIR/server.pem, DIR/server.key), ECDSA P-256 as most sites use. Both servers
# under test are given the same certificate and key, so the handshakes cost them the same.
make_tls_cert() {
    local d="$1"
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" \
        -out "$d/ca.pem" -subj "/CN=arca bench CA" -days 2 2>/dev/null || die "openssl: CA"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/server.key" 2>/dev/null \
        || die "openssl: server key"
    openssl req -new -key "$d/server.key" -out "$d/server.csr" -subj /CN=localhost 2>/dev/null \
        || die "openssl: CSR"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
        "basicConstraints=CA:FALSE" "keyUsage=digitalSignature" >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial 1 \
        -days 2 -extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null || die "openssl: certificate"
}

# start_arca HOME LOG [TLS_DIR]: `arca serve` on a free loopback port (initialising HOME on
# first start), over TLS with TLS_DIR's server certificate (make_tls_cert) when given. Sets
# ARCA_PID (in PIDS) and AURL_BASE (http://127.0.0.1:PORT or https://...); returns once the
# server printed its address (bounded: 60 s, the first start makes keys and the database).
start_arca() {
    local home="$1" out="$2" tls="${3:-}" port=""
    if [[ -n "$tls" ]]; then
        timeout 120 "$ARCA" init --home "$home" >"$out.init" 2>&1 || { cat "$out.init" >&2; die "arca init failed"; }
        printf '\n[tls]\ncert = "%s"\nkey = "%s"\n' "$tls/server.pem" "$tls/server.key" >>"$home/arca.toml"
    fi
    RUST_LOG="${ARCA_LOG:-info}" "$ARCA" serve --home "$home" --listen 127.0.0.1:0 </dev/null >"$out" 2>"$out.log" &
    ARCA_PID=$!
    PIDS+=("$ARCA_PID")
    for _ in $(seq 600); do
        kill -0 "$ARCA_PID" 2>/dev/null || { cat "$out" "$out.log" >&2; die "arca serve exited"; }
        port=$(grep -oE 'arca listening on https?://127\.0\.0\.1:[0-9]+' "$out" | head -n1 | grep -oE '[0-9]+$' || true)
        [[ -n "$port" ]] && break
        sleep 0.1
    done
    [[ -n "$port" ]] || { cat "$out.log" >&2; die "arca serve printed no 'arca listening on' line within 60 s"; }
    if [[ -n "$tls" ]]; then AURL_BASE="https://127.0.0.1:$port"; else AURL_BASE="http://127.0.0.1:$port"; fi
}

# start_nginx WORKERS WORKER_CONNECTIONS [EXTRA_HTTP_DIRECTIVES]: nginx (installed with apt if
# missing) serving $TMP/www as static files on a free loopback port, its files under
# $TMP/nginx. With NGINX_TLS_DIR set (make_tls_cert), it also serves ${NGINX_TLS_ROOT:-$TMP/www}
# over TLS (HTTP/1.1, its default session cache) on a second free port, NTPORT. Sets NGINX (the
# binary), NGINX_VERSION, NPORT, NGINX_PID (in PIDS) and N (its directory); returns once it
# answers (bounded).
start_nginx() {
    local workers="$1" conns="$2" extra="${3:-}" user_line="" tls_server=""
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x "$NGINX" ]] || { apt_install nginx; NGINX=/usr/sbin/nginx; }
    # shellcheck disable=SC2034 # used by the scripts that source this file
    NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's|.*nginx/||')
    NPORT=$(free_port)
    N="$TMP/nginx"
    mkdir -p "$N/tmp"
    [[ $EUID -eq 0 ]] && user_line="user root;" # workers must read the 0700 scratch dir
    NTPORT=""
    if [[ -n "${NGINX_TLS_DIR:-}" ]]; then
        NTPORT=$(free_port)
        tls_server="server {
        listen 127.0.0.1:$NTPORT ssl;
        ssl_certificate $NGINX_TLS_DIR/server.pem;
        ssl_certificate_key $NGINX_TLS_DIR/server.key;
        root ${NGINX_TLS_ROOT:-$TMP/www};
    }"
    fi
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
    $tls_server
}
EOF
    "$NGINX" -e "$N/error.log" -p "$N" -c "$N/nginx.conf" </dev/null >"$N/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$NPORT/" 30 \
        || { cat "$N/error.log" "$N/stdout.log" >&2; die "nginx did not answer within 30 s"; }
}
