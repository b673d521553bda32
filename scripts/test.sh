#!/usr/bin/env bash
# The one test command: prepares the Python test environment (python-tuf,
# moto's S3 server) and runs every Rust test in the workspace.
# Extra arguments go to the main `cargo test` run (e.g. scripts/test.sh -- --nocapture);
# the crates' documentation examples run after it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-env.sh
# Integration tests find python (for tools/tuf_fetch_check.py) and
# moto_server (started per test as `moto_server -H 127.0.0.1 -p 0`) here.
export ARCA_TEST_VENV="$PWD/.test-env/venv"
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
