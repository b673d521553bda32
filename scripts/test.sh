#!/usr/bin/env bash
# The one test command: prepares the test environment (scripts/test-env.sh: python-tuf and
# moto's S3 server in .test-env/venv, strace, PostgreSQL 15, ...) and runs every test of the
# workspace: unit, property and integration tests on SQLite, then the crates' documentation
# examples, then the integration tests again on PostgreSQL (a throw-away cluster started with
# scripts/pg.sh, stopped and removed on exit; every test server gets a database of its own in
# it), then the release binary's size (scripts/check-release.sh).
#
# With arguments, runs just what they select, as `cargo test` arguments for the workspace:
#   scripts/test.sh --test it                  the integration tests (one binary, tests/it/)
#   scripts/test.sh --test it refusals::       one former test file: the module tests/it/refusals.rs
#   scripts/test.sh --test it refusals::bad_   tests of that module whose name starts with "bad_"
#   scripts/test.sh --test it rollout::halts:: one section of a split module (tests/it/rollout/)
#   scripts/test.sh -p arca-keys               one crate
#   scripts/test.sh --lib rollout::            unit tests whose path contains "rollout::"
# on SQLite; on PostgreSQL instead with ARCA_TEST_ENGINE=postgres:
#   ARCA_TEST_ENGINE=postgres scripts/test.sh --test it refusals::
#
# ARCA_TEST_ENGINE=sqlite skips the PostgreSQL pass of the full run.
set -euo pipefail
cd "$(dirname "$0")/.."
engine="${ARCA_TEST_ENGINE:-}"
case "$engine" in
"" | sqlite | postgres) ;;
*)
    echo "test.sh: ARCA_TEST_ENGINE is sqlite or postgres, not '$engine'" >&2
    exit 2
    ;;
esac
scripts/test-env.sh
# Integration tests find python (for tests/tuf_check.py) and moto_server (started per test as
# `moto_server -H 127.0.0.1 -p 0`) in this venv.
export ARCA_TEST_VENV="$PWD/.test-env/venv"
# Never an outer PostgreSQL by accident: the PostgreSQL runs below set it themselves.
unset ARCA_TEST_PG

# Starts a throw-away PostgreSQL cluster (stopped and removed on exit) and exports its admin
# URL as ARCA_TEST_PG: the harness (tests/it/common) then creates a database per test server.
start_pg() {
    PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/arca-pg.XXXXXX")"
    trap 'scripts/pg.sh stop "$PG_DIR"' EXIT
    ARCA_TEST_PG="$(scripts/pg.sh start "$PG_DIR")"
    export ARCA_TEST_PG
    echo "test.sh: PostgreSQL at $ARCA_TEST_PG ($PG_DIR)"
}

if [[ $# -gt 0 ]]; then
    if [[ "$engine" == postgres ]]; then
        start_pg
        cargo test "$@"
        exit
    fi
    exec cargo test "$@"
fi
cargo test --workspace --all-targets
cargo test --workspace --doc
if [[ "$engine" != sqlite ]]; then
    start_pg
    cargo test -p arca --test it
fi
# The shipped binary: release build, under 30 MiB, no DWARF.
scripts/check-release.sh
