#!/usr/bin/env bash
# Whole-system throughput benchmark (not run in CI).
#
# One random file (SIZE_MB MiB, default 1024) goes through:
#   (a) the local floor: cp, b3sum (BLAKE3) and sha256sum of the file;
#   (b) arca: push (upload + hashing + signing + entering dev) and a verified
#       pull, with the server's peak RSS sampled during the push;
#   (c) the CNCF distribution registry (Debian docker-registry): monolithic
#       blob upload and blob download;
#   (d) nginx serving the file as a static file (sendfile on);
#   (e) over TLS, with one test certificate (ECDSA P-256, made with openssl) for both: arca
#       (a second home with [tls] set) push and verified pull, and nginx's download over TLS
#       (HTTP/1.1; without kernel TLS, nginx cannot sendfile and encrypts in user space too).
# and prints throughputs in MiB/s and the ratios arca is held to:
#   arca push / registry upload          target >= 2.0
#   arca pull time / nginx download time target <= 1.5
#   the same over TLS                    target <= 1.3
#   arca server peak RSS                 target <  100 MiB
#
# Usage: bench/push_pull.sh [--json]
# Env:   SIZE_MB=1024   file size in MiB
#        SKIP_ARCA=1    skip part (b) (no cargo build, no arca figures)
#        ARCA_BIN=PATH  use this arca binary instead of building target/release/arca
#        SKIP_REGISTRY=1 / SKIP_NGINX=1 / SKIP_TLS=1  skip part (c) / (d) / (e)
#        BENCH_TMP=DIR  parent of the scratch directory (default: $TMPDIR or /tmp)
#        KEEP_TMP=1     keep the scratch directory
#        REPEAT=3       runs per timed step; the fastest is reported
# Progress goes to stderr; the table (or, with --json, one JSON object) to stdout.
# Only loopback addresses are used. Every wait is bounded.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
bench_args "${BASH_SOURCE[0]}" "$@"

SIZE_MB="${SIZE_MB:-1024}"
[[ "$SIZE_MB" =~ ^[1-9][0-9]*$ ]] || { echo "push_pull.sh: SIZE_MB must be a positive integer" >&2; exit 2; }
SKIP_ARCA="${SKIP_ARCA:-0}"
SKIP_REGISTRY="${SKIP_REGISTRY:-0}"
SKIP_NGINX="${SKIP_NGINX:-0}"
SKIP_TLS="${SKIP_TLS:-0}"
XFER_TIMEOUT=900 # seconds, bound for any single transfer / hashing step
REPEAT="${REPEAT:-3}" # runs per timed step; the fastest counts
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "push_pull.sh: REPEAT must be a positive integer" >&2; exit 2; }

# ---------------------------------------------------------------- helpers
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", b - a }'; }

# timed NAME CMD...: run CMD REPEAT times (after a sync each), store the fastest wall-clock
# seconds in T[NAME]. Best-of-N, because this machine is shared and one slow run says little.
declare -A T=()
timed() {
    local name="$1" t0 t1 d best="" i rc=0
    shift
    for ((i = 1; i <= REPEAT; i++)); do
        sync
        t0=$(now)
        "$@" || { rc=$?; break; }
        t1=$(now)
        d=$(elapsed "$t0" "$t1")
        best=$(awk -v a="$best" -v b="$d" 'BEGIN { if (a == "" || b < a) print b; else print a }')
    done
    T[$name]=${best:-0}
    return "$rc"
}

# ---------------------------------------------------------------- setup
BASE="${BENCH_TMP:-${TMPDIR:-/tmp}}"
TMP="$(mktemp -d "$BASE/arca-bench.XXXXXX")"
avail_mb=$(df -Pm "$TMP" | awk 'NR == 2 { print $4 }')
need_mb=$((SIZE_MB * 5 + 256))
((avail_mb >= need_mb)) || die "need ~${need_mb} MiB free under $BASE, have ${avail_mb} MiB"

BYTES=$((SIZE_MB * 1024 * 1024))
mkdir -p "$TMP/www"
BLOB="$TMP/www/blob.bin" # nginx serves this very file
log "scratch dir $TMP; writing ${SIZE_MB} MiB of random data"
head -c "$BYTES" /dev/urandom >"$BLOB"
SHA256=$(sha256sum "$BLOB" | cut -d' ' -f1)

declare -A V=() # other figures: string values
V[size_bytes]=$BYTES

# ---------------------------------------------------------------- (a) local floor
B3SUM=""
HASH_TOOL=""
TOOLS_ROOT="$REPO/target/bench-tools"
if command -v b3sum >/dev/null 2>&1; then
    B3SUM=$(command -v b3sum)
elif [[ -x "$TOOLS_ROOT/bin/b3sum" ]]; then
    B3SUM="$TOOLS_ROOT/bin/b3sum"
else
    log "installing b3sum from crates.io into $TOOLS_ROOT"
    if timeout 1800 cargo install b3sum --locked --root "$TOOLS_ROOT" >"$TMP/b3sum-install.log" 2>&1; then
        B3SUM="$TOOLS_ROOT/bin/b3sum"
    else
        log "b3sum install failed (see below); falling back to python hashlib"
        tail -n 5 "$TMP/b3sum-install.log" >&2 || true
    fi
fi

log "(a) cp"
timed cp timeout "$XFER_TIMEOUT" cp "$BLOB" "$TMP/copy.bin"
rm -f "$TMP/copy.bin"
if [[ -n "$B3SUM" ]]; then
    HASH_TOOL="b3sum ($("$B3SUM" --version 2>/dev/null | head -n1), BLAKE3, default threads)"
    log "(a) b3sum"
    timed hash timeout "$XFER_TIMEOUT" "$B3SUM" "$BLOB" >/dev/null
else
    HASH_TOOL="python3 hashlib.sha256 (b3sum unavailable)"
    log "(a) python hashlib"
    timed hash timeout "$XFER_TIMEOUT" python3 -c '
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    while chunk := f.read(1 << 20):
        h.update(chunk)
print(h.hexdigest())' "$BLOB" >/dev/null
fi
V[hash_tool]=$HASH_TOOL
log "(a) sha256sum"
timed sha256sum timeout "$XFER_TIMEOUT" sha256sum "$BLOB" >/dev/null

# ---------------------------------------------------------------- arca helpers
# arca_prepare HOME URL: point the client at the server (ARCA_SERVER, ARCA_TOKEN) and add a
# builder key (TMP/builder.key, made once) for bench/* to its trust document.
arca_prepare() {
    export ARCA_SERVER="$2"
    ARCA_TOKEN="$(cat "$1/admin.token")"
    export ARCA_TOKEN
    if [[ ! -f "$TMP/builder.key" ]]; then
        timeout 60 "$ARCA" key gen --unencrypted --out "$TMP/builder.key" >"$TMP/arca-keygen.log" 2>&1 \
            || { cat "$TMP/arca-keygen.log" >&2; die "arca key gen failed"; }
    fi
    timeout 60 "$ARCA" trust add-key "$TMP/builder.key.pub" --role builder --scope 'bench/*' \
        --sign "$1/keys/root.key" >"$TMP/arca-trust.log" 2>&1 \
        || { cat "$TMP/arca-trust.log" >&2; die "arca trust add-key failed"; }
}

# Each push sends a new version (the same bytes: the server still receives, hashes and writes
# all of them before it finds the blob stored).
PUSH_N=0
arca_push_once() {
    PUSH_N=$((PUSH_N + 1))
    timeout "$XFER_TIMEOUT" "$ARCA" push "$BLOB" --name bench/blob --version "1.0.$PUSH_N" \
        --key "$TMP/builder.key" >"$TMP/arca-push.log" 2>&1
}

# arca_pull_once HOME: a verified pull of the newest bench/blob in dev, trusting HOME's root.json
arca_pull_once() {
    rm -rf "$TMP/pulled"
    mkdir -p "$TMP/pulled"
    timeout "$XFER_TIMEOUT" "$ARCA" pull bench/blob --channel dev \
        --root "$1/root.json" --out "$TMP/pulled" >"$TMP/arca-pull.log" 2>&1
}

# pulled_ok: whether the last pull wrote the original bytes
pulled_ok() {
    local pulled
    pulled="$TMP/pulled/$(basename "$BLOB")"
    if [[ -f "$pulled" ]] && cmp -s "$BLOB" "$pulled"; then
        echo identical
    else
        log "the pulled file differs from the original (or is missing: $pulled)"
        ls -l "$TMP/pulled" >&2 || true
        echo DIFFERENT
    fi
}

# ---------------------------------------------------------------- (b) arca
ARCA_SERVER_PID=""
if [[ "$SKIP_ARCA" == 1 ]]; then
    log "(b) arca skipped (SKIP_ARCA=1)"
else
    if [[ -n "${ARCA_BIN:-}" ]]; then
        ARCA="$ARCA_BIN"
        log "(b) using ARCA_BIN=$ARCA (no build)"
    else
        log "(b) cargo build --release"
        (cd "$REPO" && timeout 3600 cargo build --release --bin arca) >&2 || die "cargo build --release failed"
        ARCA="$REPO/target/release/arca"
    fi
    [[ -x "$ARCA" ]] || die "$ARCA not found after build"
    HOME_DIR="$TMP/home"
    timeout 120 "$ARCA" init --home "$HOME_DIR" >"$TMP/arca-init.log" 2>&1 \
        || { cat "$TMP/arca-init.log" >&2; die "arca init failed"; }

    start_arca "$HOME_DIR" "$TMP/arca-serve.out"
    ARCA_SERVER_PID=$ARCA_PID
    log "(b) arca serving on $AURL_BASE (pid $ARCA_SERVER_PID)"
    arca_prepare "$HOME_DIR" "$AURL_BASE"

    # Sample the server's VmRSS every 0.2 s while the push runs.
    RSS_FILE="$TMP/rss.max"
    echo 0 >"$RSS_FILE"
    (
        max=0
        while kill -0 "$ARCA_SERVER_PID" 2>/dev/null; do
            rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$ARCA_SERVER_PID/status" 2>/dev/null || echo 0)
            if [[ -n "$rss" ]] && ((rss > max)); then max=$rss; echo "$max" >"$RSS_FILE"; fi
            sleep 0.2
        done
    ) &
    SAMPLER_PID=$!
    PIDS+=("$SAMPLER_PID")

    log "(b) arca push"
    timed arca_push arca_push_once \
        || { cat "$TMP/arca-push.log" >&2; die "arca push failed"; }
    hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ARCA_SERVER_PID/status")
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    rss_kb=$(cat "$RSS_FILE")
    V[arca_vmhwm_kb]=$hwm_kb
    V[arca_vmrss_max_kb]=$rss_kb

    log "(b) arca pull"
    timed arca_pull arca_pull_once "$HOME_DIR" \
        || { cat "$TMP/arca-pull.log" >&2; die "arca pull failed"; }
    V[arca_pull_cmp]=$(pulled_ok)
    rm -rf "$TMP/pulled"
    kill "$ARCA_SERVER_PID" 2>/dev/null || true

    if [[ "$SKIP_TLS" == 1 ]]; then
        log "(e) TLS skipped (SKIP_TLS=1)"
    else
        make_tls_cert "$TMP/tls"
        TLS_HOME="$TMP/home-tls"
        start_arca "$TLS_HOME" "$TMP/arca-tls.out" "$TMP/tls"
        log "(e) arca over TLS on $AURL_BASE (pid $ARCA_PID)"
        export ARCA_CA_CERT="$TMP/tls/ca.pem"
        arca_prepare "$TLS_HOME" "$AURL_BASE"
        log "(e) arca push over TLS"
        timed arca_push_tls arca_push_once \
            || { cat "$TMP/arca-push.log" >&2; die "arca push over TLS failed"; }
        log "(e) arca pull over TLS"
        timed arca_pull_tls arca_pull_once "$TLS_HOME" \
            || { cat "$TMP/arca-pull.log" >&2; die "arca pull over TLS failed"; }
        V[arca_pull_tls_cmp]=$(pulled_ok)
        rm -rf "$TMP/pulled"
        kill "$ARCA_PID" 2>/dev/null || true
        unset ARCA_CA_CERT
    fi
fi

# ---------------------------------------------------------------- (c) distribution registry
if [[ "$SKIP_REGISTRY" == 1 ]]; then
    log "(c) registry skipped (SKIP_REGISTRY=1)"
else
    [[ -x /usr/bin/docker-registry ]] || apt_install docker-registry
    V[registry_version]=$(/usr/bin/docker-registry --version 2>/dev/null | awk '{ print $NF }')
    RPORT=$(free_port)
    mkdir -p "$TMP/registry"
    cat >"$TMP/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$RPORT
EOF
    /usr/bin/docker-registry serve "$TMP/registry.yml" </dev/null >"$TMP/registry.log" 2>&1 &
    REG_PID=$!
    PIDS+=("$REG_PID")
    RURL="http://127.0.0.1:$RPORT"
    wait_http "$RURL/v2/" 30 || { cat "$TMP/registry.log" >&2; die "registry did not answer within 30 s"; }
    log "(c) registry on port $RPORT (pid $REG_PID)"

    # Each run opens its own upload session (a session URL takes one PUT); the POST that opens
    # it is a few milliseconds next to the upload.
    registry_upload_once() {
        local loc put_url
        loc=$(curl -s --max-time 30 -X POST -H 'Content-Length: 0' -D - -o /dev/null "$RURL/v2/bench/blobs/uploads/" \
            | tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
        [[ -n "$loc" ]] || { echo "registry: no Location header from POST /v2/bench/blobs/uploads/" >&2; return 1; }
        [[ "$loc" == http* ]] || loc="$RURL$loc"
        if [[ "$loc" == *\?* ]]; then put_url="$loc&digest=sha256:$SHA256"; else put_url="$loc?digest=sha256:$SHA256"; fi
        curl -sS --fail --max-time "$XFER_TIMEOUT" -o /dev/null \
            -H 'Content-Type: application/octet-stream' -H 'Expect:' -T "$BLOB" "$put_url"
    }

    log "(c) registry upload"
    timed registry_upload registry_upload_once || die "registry upload failed"
    log "(c) registry download"
    timed registry_download curl -sS --fail --max-time "$XFER_TIMEOUT" \
        -o "$TMP/registry.out" "$RURL/v2/bench/blobs/sha256:$SHA256"
    cmp -s "$BLOB" "$TMP/registry.out" || die "registry download differs from the original"
    rm -f "$TMP/registry.out"
    kill "$REG_PID" 2>/dev/null || true
    rm -rf "$TMP/registry"
fi

# ---------------------------------------------------------------- (d) nginx
if [[ "$SKIP_NGINX" == 1 ]]; then
    log "(d) nginx skipped (SKIP_NGINX=1)"
else
    if [[ "$SKIP_TLS" != 1 ]]; then
        [[ -f "$TMP/tls/server.pem" ]] || make_tls_cert "$TMP/tls"
        export NGINX_TLS_DIR="$TMP/tls"
    fi
    start_nginx 1 64
    V[nginx_version]=$NGINX_VERSION
    NURL="http://127.0.0.1:$NPORT"
    log "(d) nginx on port $NPORT (pid $NGINX_PID)"
    log "(d) nginx download"
    timed nginx_download curl -sS --fail --max-time "$XFER_TIMEOUT" -o "$TMP/nginx.out" "$NURL/$(basename "$BLOB")"
    cmp -s "$BLOB" "$TMP/nginx.out" || die "nginx download differs from the original"
    rm -f "$TMP/nginx.out"
    if [[ -n "$NTPORT" ]]; then
        log "(e) nginx download over TLS (port $NTPORT)"
        timed nginx_download_tls curl -sS --fail --http1.1 --cacert "$TMP/tls/ca.pem" --max-time "$XFER_TIMEOUT" \
            -o "$TMP/nginx.out" "https://127.0.0.1:$NTPORT/$(basename "$BLOB")"
        cmp -s "$BLOB" "$TMP/nginx.out" || die "nginx download over TLS differs from the original"
        rm -f "$TMP/nginx.out"
    fi
    kill "$NGINX_PID" 2>/dev/null || true
fi

# ---------------------------------------------------------------- report
args=()
for k in "${!T[@]}"; do args+=("t_$k=${T[$k]}"); done
for k in "${!V[@]}"; do args+=("v_$k=${V[$k]}"); done
python3 - "$JSON" "$SIZE_MB" "${args[@]}" <<'PY'
import json, sys

as_json = sys.argv[1] == "1"
size_mb = int(sys.argv[2])
t, v = {}, {}
for a in sys.argv[3:]:
    k, _, val = a.partition("=")
    (t if k.startswith("t_") else v)[k[2:]] = val
t = {k: float(x) for k, x in t.items()}
mib = int(v["size_bytes"]) / (1 << 20)

def rate(name):
    s = t.get(name)
    return round(mib / s, 1) if s else None

out = {"size_mib": size_mb, "seconds": {k: round(x, 4) for k, x in sorted(t.items())}}
out["mib_per_s"] = {k: rate(k) for k in sorted(t)}
if "cp" in t and "hash" in t:
    out["mib_per_s"]["cp_plus_hash"] = round(mib / (t["cp"] + t["hash"]), 1)
out["hash_tool"] = v.get("hash_tool")
for k in ("registry_version", "nginx_version", "arca_pull_cmp", "arca_pull_tls_cmp"):
    if k in v:
        out[k] = v[k]
ratios = {}
if "arca_push" in t and "registry_upload" in t:
    ratios["push_vs_registry_upload"] = round(t["registry_upload"] / t["arca_push"], 2)
if "arca_pull" in t and "nginx_download" in t:
    ratios["pull_time_vs_nginx_time"] = round(t["arca_pull"] / t["nginx_download"], 2)
if "arca_pull_tls" in t and "nginx_download_tls" in t:
    ratios["tls_pull_time_vs_nginx_time"] = round(t["arca_pull_tls"] / t["nginx_download_tls"], 2)
out["ratios"] = ratios
if "arca_vmhwm_kb" in v:
    hwm = int(v["arca_vmhwm_kb"] or 0) / 1024
    rss = int(v["arca_vmrss_max_kb"] or 0) / 1024
    out["arca_server_peak_rss_mib"] = round(max(hwm, rss), 1)
    out["arca_server_vmhwm_mib"] = round(hwm, 1)
    out["arca_server_vmrss_max_mib"] = round(rss, 1)
targets = {}
if "push_vs_registry_upload" in ratios:
    targets["push_vs_registry_upload>=2.0"] = ratios["push_vs_registry_upload"] >= 2.0
if "pull_time_vs_nginx_time" in ratios:
    targets["pull_time_vs_nginx_time<=1.5"] = ratios["pull_time_vs_nginx_time"] <= 1.5
if "tls_pull_time_vs_nginx_time" in ratios:
    targets["tls_pull_time_vs_nginx_time<=1.3"] = ratios["tls_pull_time_vs_nginx_time"] <= 1.3
if "arca_server_peak_rss_mib" in out:
    targets["peak_rss_mib<100"] = out["arca_server_peak_rss_mib"] < 100
out["targets_met"] = targets

if as_json:
    print(json.dumps(out, sort_keys=True))
    sys.exit(0)

labels = [
    ("cp", "(a) cp"),
    ("hash", "(a) " + (out["hash_tool"] or "hash")),
    ("sha256sum", "(a) sha256sum (coreutils, no SHA-NI)"),
    ("arca_push", "(b) arca push"),
    ("arca_pull", "(b) arca pull (verified)"),
    ("registry_upload", "(c) registry blob upload"),
    ("registry_download", "(c) registry blob download"),
    ("nginx_download", "(d) nginx download"),
    ("arca_push_tls", "(e) arca push over TLS"),
    ("arca_pull_tls", "(e) arca pull over TLS (verified)"),
    ("nginx_download_tls", "(e) nginx download over TLS"),
]
print(f"file: {size_mb} MiB random")
print(f"{'step':<58} {'seconds':>9} {'MiB/s':>9}")
for key, label in labels:
    if key in t:
        print(f"{label:<58} {t[key]:>9.3f} {out['mib_per_s'][key]:>9.1f}")
    if key == "sha256sum" and "cp_plus_hash" in out["mib_per_s"]:
        print(f"{'(a) cp + hash (local floor)':<58} {t['cp'] + t['hash']:>9.3f} "
              f"{out['mib_per_s']['cp_plus_hash']:>9.1f}")
def verdict(ok):
    return "ok" if ok else "MISSED"
if "push_vs_registry_upload" in ratios:
    r = ratios["push_vs_registry_upload"]
    print(f"arca push / registry upload throughput: {r:.2f}x (target >= 2.0: {verdict(r >= 2.0)})")
if "pull_time_vs_nginx_time" in ratios:
    r = ratios["pull_time_vs_nginx_time"]
    print(f"arca pull is {r:.2f}x nginx's time (target <= 1.5: {verdict(r <= 1.5)})")
if "tls_pull_time_vs_nginx_time" in ratios:
    r = ratios["tls_pull_time_vs_nginx_time"]
    print(f"over TLS, arca pull is {r:.2f}x nginx's time (target <= 1.3: {verdict(r <= 1.3)})")
if "arca_server_peak_rss_mib" in out:
    p = out["arca_server_peak_rss_mib"]
    print(f"arca server peak RSS: {p:.1f} MiB (VmHWM {out['arca_server_vmhwm_mib']:.1f}, "
          f"sampled VmRSS max {out['arca_server_vmrss_max_mib']:.1f}) (target < 100: {verdict(p < 100)})")
if "arca_pull_cmp" in out:
    print(f"pulled file vs original: {out['arca_pull_cmp']}")
if "arca_pull_tls_cmp" in out:
    print(f"file pulled over TLS vs original: {out['arca_pull_tls_cmp']}")
for k in ("registry_version", "nginx_version"):
    if k in out:
        print(f"{k.replace('_', ' ')}: {out[k]}")
PY
