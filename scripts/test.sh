#!/usr/bin/env bash
# The one test command: prepares the test environment (scripts/test-env.sh: python-tuf and
# moto's S3 server in .test-env/venv, strace, ...) and runs every test of the workspace: unit,
# property and integration tests, then the crates' documentation examples, then the release
# binary's size (scripts/check-release.sh).
#
# With arguments, runs just what they select, as `cargo test` arguments for the workspace:
#   scripts/test.sh --test it                  the integration tests (one binary, tests/it/)
#   scripts/test.sh --test it refusals::       one former test file: the module tests/it/refusals.rs
#   scripts/test.sh --test it refusals::bad_   tests of that module whose name starts with "bad_"
#   scripts/test.sh --test it rollout::halts:: one section of a split module (tests/it/rollout/)
#   scripts/test.sh -p arca-keys               one crate
#   scripts/test.sh --lib rollout::            unit tests whose path contains "rollout::"
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-env.sh
# Integration tests find python (for tests/tuf_check.py) and moto_server (started per test as
# `moto_server -H 127.0.0.1 -p 0`) in this venv.
export ARCA_TEST_VENV="$PWD/.test-env/venv"
if [[ $# -gt 0 ]]; then
    exec cargo test "$@"
fi
cargo test --workspace --all-targets
cargo test --workspace --doc
# The shipped binary: release build, under 30 MiB, no DWARF.
scripts/check-release.sh
