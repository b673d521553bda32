#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for the integration tests (Debian's postgresql-15, which
# scripts/test-env.sh installs):
#   scripts/pg.sh start DIR   creates a cluster in DIR (a new or empty directory), starts it on
#                             a free loopback port chosen now, waits until it accepts
#                             connections and prints one line: its admin URL,
#                             postgres://postgres@127.0.0.1:PORT
#   scripts/pg.sh stop DIR    stops it (immediately: nothing in it is worth a clean shutdown)
#                             and removes DIR.
# PG_DURABLE=1 keeps PostgreSQL's own durability settings (fsync, synchronous_commit on), for
# benchmarks that compare durable commits; the tests leave it unset.
# The cluster belongs to the `postgres` OS user when run as root (PostgreSQL refuses to run as
# root), listens on 127.0.0.1 only, with its unix socket inside DIR, and trusts every loopback
# connection: it holds nothing but test databases, and lives as long as one test run.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

usage() {
    echo "usage: scripts/pg.sh start DIR | scripts/pg.sh stop DIR" >&2
    exit 2
}

[[ $# -eq 2 ]] || usage
cmd="$1"
dir="$2"

for b in initdb pg_ctl postgres; do
    [[ -x "$PG_BIN/$b" ]] || {
        echo "pg.sh: no $PG_BIN/$b: install Debian's postgresql-15 (scripts/test-env.sh does)" >&2
        exit 1
    }
done

# As root, run the server's tools as the `postgres` user; otherwise as ourselves.
as_pg() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# A free loopback port: the kernel picks one for a socket bound to port 0. It is released
# before PostgreSQL binds it, so another process may take it first: start retries.
free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

case "$cmd" in
start)
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    data="$dir/data"
    log="$dir/postgres.log"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$dir"
    fi
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
        >"$dir/initdb.log" 2>&1 || {
        echo "pg.sh: initdb failed; see $dir/initdb.log" >&2
        tail -n 20 "$dir/initdb.log" >&2
        exit 1
    }
    # Loopback only (TCP, and the unix socket kept inside DIR), trusted: test databases only.
    cat >"$data/pg_hba.conf" <<'EOF'
local all all              trust
host  all all 127.0.0.1/32 trust
EOF
    # max_connections: the suite runs many servers at once, each with a pool of up to ~8
    # connections, plus the tests' own. fsync and full_page_writes off: the tests kill arca
    # processes, never the machine, so PostgreSQL's own crash safety buys nothing here and its
    # flushes would slow every commit.
    cat >>"$data/postgresql.conf" <<EOF

# scripts/pg.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
max_connections = 500
EOF
    if [[ "${PG_DURABLE:-}" != 1 ]]; then
        printf 'fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n' >>"$data/postgresql.conf"
    fi
    for _ in 1 2 3 4 5; do
        port="$(free_port)"
        if as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "-p $port" start >/dev/null 2>&1; then
            echo "postgres://postgres@127.0.0.1:$port"
            exit 0
        fi
        # Most likely the port was taken in between: try another one.
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    done
    echo "pg.sh: PostgreSQL did not start; see $log" >&2
    tail -n 20 "$log" >&2 || true
    exit 1
    ;;
stop)
    if [[ -d "$dir/data" ]]; then
        as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
