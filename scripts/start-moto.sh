#!/usr/bin/env bash
# Starts moto's S3 server from the test venv in the background on a free
# loopback port and prints "PID PORT" on stdout once it answers HTTP.
# Stop it with: kill PID
#
# moto_server accepts `-p 0` (werkzeug binds an ephemeral port) and reports
# the real port on stderr as " * Running on http://127.0.0.1:PORT"; this script
# parses that line, so there is no pick-a-port-then-bind race.
#
# Env: ARCA_TEST_VENV (default $REPO/.test-env/venv), MOTO_LOG (default a temp file).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ARCA_TEST_VENV:-$REPO/.test-env/venv}"
[[ -x "$VENV/bin/moto_server" ]] || "$REPO/scripts/test-env.sh" >&2
LOG="${MOTO_LOG:-$(mktemp -t moto.XXXXXX.log)}"

PYTHONUNBUFFERED=1 setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p 0 </dev/null >"$LOG" 2>&1 &
pid=$!

port=""
for _ in $(seq 300); do # up to 30 s
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "start-moto: moto_server exited; log: $LOG" >&2
        cat "$LOG" >&2
        exit 1
    fi
    if [[ -z "$port" ]]; then
        port="$(grep -oE 'Running on http://127\.0\.0\.1:[0-9]+' "$LOG" | head -n1 | grep -oE '[0-9]+$' || true)"
    fi
    if [[ -n "$port" ]] && curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"; then
        echo "$pid $port"
        exit 0
    fi
    sleep 0.1
done
echo "start-moto: moto_server did not answer within 30 s; log: $LOG" >&2
kill "$pid" 2>/dev/null || true
exit 1
