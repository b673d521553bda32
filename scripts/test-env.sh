#!/usr/bin/env bash
# Creates (or reuses) the Python environment the integration tests need:
#   $REPO/.test-env/venv  with python-tuf (the reference TUF client used by
#   tests/tuf_check.py) and moto's S3 server (`moto_server`).
# Also makes sure strace (>= 4.16, for its fault injection) is installed: the
# agent's crash tests use it to SIGKILL the agent at an exact system call,
# and that libfaketime is (the clock tests fake the server's wall clock), and
# SoftHSM 2 (tests/pkcs11.rs keeps keys on its software tokens, a token
# directory and SOFTHSM2_CONF of each test's own), and PostgreSQL 15 (scripts/test.sh runs the
# integration tests a second time on a throw-away cluster of it, scripts/pg.sh).
# Idempotent: a stamp file records the pinned requirements; when it matches
# and the venv is intact, nothing is done.
set -euo pipefail

if ! command -v strace >/dev/null 2>&1; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    echo "test-env: installing strace (apt)"
    if ! { $SUDO apt-get install -y -q strace >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q strace >/dev/null 2>&1; }; }; then
        echo "test-env: cannot install strace with apt-get; install it (Debian package strace)" >&2
        exit 1
    fi
fi

# libfaketime: the clock tests run the server under a fake wall clock (LD_PRELOAD) that they
# move while it runs, with the monotonic clock left real.
if ! compgen -G "/usr/lib/*/faketime/libfaketime.so.1" >/dev/null; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    echo "test-env: installing faketime and libfaketime (apt)"
    if ! { $SUDO apt-get install -y -q faketime libfaketime >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q faketime libfaketime >/dev/null 2>&1; }; }; then
        echo "test-env: cannot install libfaketime with apt-get; install it (Debian packages faketime, libfaketime)" >&2
        exit 1
    fi
fi

# SoftHSM 2: a software PKCS#11 token, for the tests of keys held in hardware.
if ! command -v softhsm2-util >/dev/null 2>&1 || ! compgen -G "/usr/lib/softhsm/libsofthsm2.so" >/dev/null; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    echo "test-env: installing softhsm2 (apt)"
    if ! { $SUDO apt-get install -y -q softhsm2 >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q softhsm2 >/dev/null 2>&1; }; }; then
        echo "test-env: cannot install softhsm2 with apt-get; install it (Debian package softhsm2)" >&2
        exit 1
    fi
fi

# PostgreSQL 15: the integration tests' second engine. Only its server binaries are used
# (scripts/pg.sh runs initdb and pg_ctl on a cluster of its own); Debian's package also starts a
# default cluster where systemd runs, which the tests do not touch.
PG_BIN=/usr/lib/postgresql/15/bin
if ! [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]]; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
    echo "test-env: installing postgresql-15 (apt)"
    if ! { $SUDO apt-get install -y -q postgresql-15 >/dev/null 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q postgresql-15 >/dev/null 2>&1; }; }; then
        echo "test-env: cannot install postgresql-15 with apt-get; install it (Debian package postgresql-15)" >&2
        exit 1
    fi
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="$REPO/.test-env"
VENV="$ENV_DIR/venv"
STAMP="$ENV_DIR/stamp"

# Pinned requirements. Changing this list reinstalls on the next run.
# moto_server (flask + flask-cors come with moto[server]; pinned for repeatability).
REQUIREMENTS="tuf==7.0.1
securesystemslib[crypto]==1.6.0
moto[server]==5.2.5
flask==3.1.3
flask-cors==6.0.5"

want="$(printf '%s\n' "$REQUIREMENTS")"

if [[ -f "$STAMP" && -x "$VENV/bin/python" && -x "$VENV/bin/moto_server" ]] \
    && [[ "$(cat "$STAMP")" == "$want" ]]; then
    echo "test-env: up to date ($VENV)"
    exit 0
fi

# The machine's python3 (resolve pyenv shims etc. to the real interpreter).
PYTHON="${PYTHON:-python3}"
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"

mkdir -p "$ENV_DIR"
rm -f "$STAMP"
action="created"
if [[ -x "$VENV/bin/python" ]]; then
    action="updated"
else
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

reqfile="$ENV_DIR/requirements.txt"
printf '%s\n' "$want" >"$reqfile"
log="$ENV_DIR/pip.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$reqfile" >"$log" 2>&1; then
    echo "test-env: pip install failed; see $log" >&2
    tail -n 20 "$log" >&2
    exit 1
fi

# Sanity: the pieces the tests rely on import / exist.
"$VENV/bin/python" -c 'import tuf.ngclient, securesystemslib, moto, flask, flask_cors' \
    || { echo "test-env: installed packages do not import" >&2; exit 1; }
[[ -x "$VENV/bin/moto_server" ]] || { echo "test-env: moto_server missing" >&2; exit 1; }

printf '%s\n' "$want" >"$STAMP"
echo "test-env: $action $VENV with $(paste -sd' ' <<<"$want")"
