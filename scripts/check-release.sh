#!/usr/bin/env bash
# Builds the release binary and checks that it ships small: symbols for backtraces, no DWARF.
# Limit: ARCA_MAX_BINARY_MB (default 30).
set -euo pipefail
cd "$(dirname "$0")/.."
max_mb="${ARCA_MAX_BINARY_MB:-30}"
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
