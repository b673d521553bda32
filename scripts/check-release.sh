#!/usr/bin/env bash
# Builds the release binary and checks that it ships small: symbols for backtraces, no DWARF.
# Limit: ARCA_MAX_BINARY_MB (default 32). The limit is there to catch DWARF coming back (116 MB)
# and unnoticed growth; raised from 30 when the TUF client took ECDSA and RSA keys (30.1 MiB).
# Thin LTO was measured and makes the binary larger (30.6 MiB against 30.1), not smaller.
set -euo pipefail
cd "$(dirname "$0")/.."
max_mb="${ARCA_MAX_BINARY_MB:-32}"
cargo build --release --locked --quiet
bin=target/release/arca
size=$(stat -c %s "$bin")
mb=$(( (size + 1048575) / 1048576 ))
if (( size > max_mb * 1048576 )); then
    echo "check-release: $bin is ${mb} MiB, over the ${max_mb} MiB limit" >&2
    exit 1
fi
if readelf -S "$bin" | grep -q '\.debug_line'; then
    echo "check-release: $bin still carries DWARF (.debug_line)" >&2
    exit 1
fi
"$bin" --version >/dev/null
echo "check-release: $bin is ${mb} MiB (limit ${max_mb} MiB), no DWARF"
