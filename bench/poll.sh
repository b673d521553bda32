#!/usr/bin/env bash
# Polling benchmark (not run in CI): deploy agents polling unchanged metadata.
#
# Many agents poll GET /tuf/{channel}/metadata/timestamp.json. This starts arca on a fresh home,
# fetches that file once, has nginx serve the very same bytes as a static file at the same path,
# and drives both with examples/poll_load.rs (CONNECTIONS keep-alive connections, one request in
# flight each), in turns, REPEAT times; the run with the best rate of each target is reported.
# When arca's answer carries an ETag, both are also polled with If-None-Match (answers 304).
# Then both over TLS: a second arca (its own home, [tls] set) and nginx's second server, with the
# same test certificate (ECDSA P-256, made with openssl), each polled over keep-alive TLS
# connections (one handshake per connection, HTTP/1.1), nginx serving that arca's bytes.
# Targets, on ratios measured in the same run (the machine is shared and noisy):
#   arca requests/s / nginx requests/s   target >= 0.5
#   arca p99 latency                     target <  10 ms
#   over TLS: arca / nginx requests/s    target >= 0.8
# A missed target is reported, not an error: the exit status is 0 unless something failed.
#
# Usage: bench/poll.sh [--json]
# Env:   CONNECTIONS=128  concurrent connections
#        DURATION=10      measured seconds per run (whole seconds)
#        WARMUP=2         seconds of load before measuring (whole seconds)
#        REPEAT=3         runs per target; the best rate counts
#        CHANNEL=dev      channel whose timestamp.json is polled
#        NGINX_WORKERS=auto  nginx worker_processes (auto: one per CPU, as arca's workers)
#        SKIP_TLS=1       no TLS modes
#        ARCA_BIN=PATH    use this arca binary instead of building target/release/arca
#        POLL_LOAD_BIN=PATH  use this load generator instead of building the example
#        BENCH_TMP=DIR    parent of the scratch directory (default: $TMPDIR or /tmp)
#        KEEP_TMP=1       keep the scratch directory (logs, every run's JSON)
#        RUST_LOG=info    arca's log filter (as in production by default; it costs CPU per request)
# Progress goes to stderr; the table (or, with --json, one JSON object) to stdout.
# Only loopback addresses are used. Every wait is bounded. If wrk is installed, its figures for
# the plain mode are reported as a cross-check (it is not required).
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
bench_args "${BASH_SOURCE[0]}" "$@"

CONNECTIONS="${CONNECTIONS:-128}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
REPEAT="${REPEAT:-3}"
CHANNEL="${CHANNEL:-dev}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
SKIP_TLS="${SKIP_TLS:-0}"
ARCA_LOG="${RUST_LOG:-info}"
[[ "$CONNECTIONS" =~ ^[1-9][0-9]*$ ]] || { echo "poll.sh: CONNECTIONS must be a positive integer" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]*$ ]] || { echo "poll.sh: DURATION must be a positive integer" >&2; exit 2; }
[[ "$WARMUP" =~ ^[0-9]+$ ]] || { echo "poll.sh: WARMUP must be a non-negative integer" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "poll.sh: REPEAT must be a positive integer" >&2; exit 2; }
[[ "$CHANNEL" =~ ^[a-z0-9][a-z0-9-]*$ ]] || { echo "poll.sh: CHANNEL is not a channel name" >&2; exit 2; }
[[ "$NGINX_WORKERS" =~ ^(auto|[1-9][0-9]*)$ ]] || { echo "poll.sh: NGINX_WORKERS must be auto or a positive integer" >&2; exit 2; }
RUN_TIMEOUT=60 # seconds a load-generator run (or wrk) may take past its warm-up and duration

# busy_ticks: clock ticks all CPUs of the machine spent busy so far (anything but idle/iowait)
busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# header_value FILE NAME: the value of the last NAME header in a curl -D dump (empty if none)
header_value() {
    tr -d '\r' <"$1" | awk -v n="$2" 'BEGIN { n = tolower(n) ":" }
        tolower($1) == n { sub(/^[^:]*:[ \t]*/, ""); v = $0 } END { print v }'
}

# ---------------------------------------------------------------- build
BASE="${BENCH_TMP:-${TMPDIR:-/tmp}}"
TMP="$(mktemp -d "$BASE/arca-poll.XXXXXX")"
log "scratch dir $TMP"

build=()
if [[ -n "${ARCA_BIN:-}" ]]; then
    ARCA="$ARCA_BIN"
    log "using ARCA_BIN=$ARCA (no build)"
else
    ARCA="$REPO/target/release/arca"
    build+=(--bin arca)
fi
if [[ -n "${POLL_LOAD_BIN:-}" ]]; then
    LOAD="$POLL_LOAD_BIN"
    log "using POLL_LOAD_BIN=$LOAD (no build)"
else
    LOAD="$REPO/target/release/examples/poll_load"
    build+=(--example poll_load)
fi
if ((${#build[@]} > 0)); then
    log "cargo build --release ${build[*]}"
    (cd "$REPO" && timeout 3600 cargo build --release "${build[@]}") >&2 || die "cargo build --release failed"
fi
[[ -x "$ARCA" ]] || die "$ARCA not found"
[[ -x "$LOAD" ]] || die "$LOAD not found"

# ---------------------------------------------------------------- arca
start_arca "$TMP/home" "$TMP/arca-serve.out"
log "arca serving on $AURL_BASE (pid $ARCA_PID, RUST_LOG=$ARCA_LOG)"
PLAIN_PID=$ARCA_PID PLAIN_BASE=$AURL_BASE
TLS_PID=""
if [[ "$SKIP_TLS" != 1 ]]; then
    make_tls_cert "$TMP/tls"
    start_arca "$TMP/home-tls" "$TMP/arca-tls.out" "$TMP/tls"
    TLS_PID=$ARCA_PID
    ATLS_BASE=$AURL_BASE
    log "arca over TLS on $ATLS_BASE (pid $TLS_PID)"
fi
ARCA_PID=$PLAIN_PID

META_PATH="/tuf/$CHANNEL/metadata/timestamp.json"
AURL="$PLAIN_BASE$META_PATH"
mkdir -p "$TMP/www$(dirname "$META_PATH")"
FILE="$TMP/www$META_PATH" # nginx serves this very file
curl -sS --fail --max-time 30 -D "$TMP/arca.headers" -o "$FILE" "$AURL" || die "GET $AURL failed"
AETAG=$(header_value "$TMP/arca.headers" etag)
log "timestamp.json: $(wc -c <"$FILE") bytes; arca ETag: ${AETAG:-none}"
if [[ -n "$TLS_PID" ]]; then
    ATURL="$ATLS_BASE$META_PATH"
    mkdir -p "$TMP/www-tls$(dirname "$META_PATH")"
    TFILE="$TMP/www-tls$META_PATH" # nginx's TLS server serves this very file
    curl -sS --fail --max-time 30 --cacert "$TMP/tls/ca.pem" -o "$TFILE" "$ATURL" || die "GET $ATURL failed"
    export NGINX_TLS_DIR="$TMP/tls" NGINX_TLS_ROOT="$TMP/www-tls"
fi

# ---------------------------------------------------------------- nginx
# A plain static-file setup, plus what keeps the comparison fair: as many workers as arca has
# (one per CPU), room for every connection, and no cap on requests per keep-alive connection
# (nginx closes a connection after 1,000 requests by default; arca does not).
start_nginx "$NGINX_WORKERS" 4096 "keepalive_requests 1000000; types { application/json json; }"
NURL="http://127.0.0.1:$NPORT$META_PATH"
curl -sS --fail --max-time 30 -D "$TMP/nginx.headers" -o "$TMP/nginx.out" "$NURL" || die "GET $NURL failed"
cmp -s "$FILE" "$TMP/nginx.out" || die "nginx serves different bytes than arca"
NETAG=$(header_value "$TMP/nginx.headers" etag)
log "nginx $NGINX_VERSION on port $NPORT (pid $NGINX_PID, worker_processes $NGINX_WORKERS)"
if [[ -n "$TLS_PID" ]]; then
    NTURL="https://127.0.0.1:$NTPORT$META_PATH"
    curl -sS --fail --max-time 30 --cacert "$TMP/tls/ca.pem" -o "$TMP/nginx-tls.out" "$NTURL" || die "GET $NTURL failed"
    cmp -s "$TFILE" "$TMP/nginx-tls.out" || die "nginx over TLS serves different bytes than arca over TLS"
    log "nginx over TLS on port $NTPORT"
fi

# ---------------------------------------------------------------- modes
# name|url|etag|what
MODES=("arca|$AURL||arca" "nginx|$NURL||nginx (static file)")
if [[ -z "$AETAG" ]]; then
    log "arca's response carries no ETag header: skipping the If-None-Match mode"
else
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "If-None-Match: $AETAG" "$AURL") || code=none
    log "arca answers If-None-Match: $AETAG with $code"
    [[ "$code" == 304 ]] || log "warning: expected 304; the conditional mode measures ${code} answers"
    [[ -n "$NETAG" ]] || die "nginx sent no ETag"
    MODES+=("arca_inm|$AURL|$AETAG|arca, If-None-Match" "nginx_inm|$NURL|$NETAG|nginx, If-None-Match")
fi
if [[ -n "$TLS_PID" ]]; then
    MODES+=("arca_tls|$ATURL||arca over TLS" "nginx_tls|$NTURL||nginx over TLS")
fi

# server_pids NAME: arca's process, or nginx's master and workers
server_pids() {
    case "$1" in
        arca_tls*) echo "$TLS_PID" ;;
        arca*) echo "$ARCA_PID" ;;
        nginx*) echo "$NGINX_PID" "$(cat /proc/"$NGINX_PID"/task/*/children 2>/dev/null)" ;;
    esac
}

# forget_pid PID: drop a reaped process from PIDS (so that cleanup never signals a reused pid)
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# run_load NAME URL ETAG OUT: one load-generator run; writes its JSON to OUT, with the CPU the
# server and the whole machine used during the measured window
run_load() {
    local name="$1" url="$2" etag="$3" out="$4" s0 s1 b0 b1 pid rc=0 args=()
    local -a spids
    read -ra spids <<<"$(server_pids "$name")"
    args=("$url" --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --json)
    [[ -n "$etag" ]] && args+=(--if-none-match "$etag")
    [[ "$url" == https://* ]] && args+=(--ca-cert "$TMP/tls/ca.pem")
    "$LOAD" "${args[@]}" </dev/null >"$out.load" 2>"$out.err" &
    pid=$!
    PIDS+=("$pid")
    sleep "$WARMUP"
    s0=$(cpu_ticks "${spids[@]}") b0=$(busy_ticks)
    sleep "$DURATION"
    s1=$(cpu_ticks "${spids[@]}") b1=$(busy_ticks)
    for _ in $(seq $((RUN_TIMEOUT * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        log "the load generator ran ${RUN_TIMEOUT} s past its end"
    fi
    wait "$pid" || rc=$?
    forget_pid "$pid"
    ((rc == 0)) || { cat "$out.err" >&2; return 1; }
    python3 - "$out" "$CLK_TCK" "$DURATION" "$((s1 - s0))" "$((b1 - b0))" <<'PY'
import json, sys
out, tck, dur = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
server, busy = (int(x) / tck for x in sys.argv[4:6])
r = json.load(open(out + ".load"))
r["server_cpu_cores"] = round(server / dur, 2)
r["server_cpu_us_per_request"] = round(server * 1e6 / r["requests"], 1) if r["requests"] else None
r["load_cpu_cores"] = r.get("cpu_cores")  # as the load generator measured itself
r["machine_busy_cores"] = round(busy / dur, 2)
json.dump(r, open(out, "w"))
PY
}

# ---------------------------------------------------------------- load
mkdir -p "$TMP/runs"
log "load: $CONNECTIONS connections, ${WARMUP} s warm-up + ${DURATION} s, best of $REPEAT, $(nproc) CPUs shared"
for ((i = 1; i <= REPEAT; i++)); do
    for m in "${MODES[@]}"; do
        IFS='|' read -r name url etag _ <<<"$m"
        f="$TMP/runs/$name.$i.json"
        run_load "$name" "$url" "$etag" "$f" || die "load generator failed against $name"
        python3 - "$f" "$i" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"[bench] run {sys.argv[2]} {sys.argv[3]:<9} {r['requests_per_s']:>9.1f} req/s  "
      f"p50 {r['p50_us'] / 1000:.2f} ms  p99 {r['p99_us'] / 1000:.2f} ms  304s {r['status_304']}  "
      f"errors {r['errors'] + r['other_status']}  server CPU {r['server_cpu_cores']}  "
      f"load CPU {r['load_cpu_cores']}  machine busy {r['machine_busy_cores']}", file=sys.stderr)
if sys.argv[3].endswith("_inm") and r["status_304"] < r["requests"]:
    print(f"[bench] warning: only {r['status_304']} of {r['requests']} answers were 304 "
          "(the metadata changed?)", file=sys.stderr)
PY
    done
done

# ---------------------------------------------------------------- wrk (optional cross-check)
WRK_ARGS=()
if command -v wrk >/dev/null 2>&1; then
    for m in "${MODES[@]:0:2}"; do
        IFS='|' read -r name url _ _ <<<"$m"
        log "wrk cross-check: $name"
        timeout $((WARMUP + DURATION + RUN_TIMEOUT)) wrk -t "$(nproc)" -c "$CONNECTIONS" -d "${DURATION}s" --latency "$url" \
            >"$TMP/runs/wrk.$name.txt" 2>&1 || die "wrk failed against $name"
        WRK_ARGS+=("$name=$TMP/runs/wrk.$name.txt")
    done
else
    log "wrk not installed: no cross-check"
fi

# ---------------------------------------------------------------- report
mode_names=()
for m in "${MODES[@]}"; do mode_names+=("${m%%|*}"); done
python3 - "$JSON" "$TMP/runs" "$REPEAT" "$CONNECTIONS" "$DURATION" "$WARMUP" "$(nproc)" \
    "$NGINX_VERSION" "$NGINX_WORKERS" "$(wc -c <"$FILE")" "${mode_names[*]}" "$ARCA_LOG" \
    "${WRK_ARGS[@]}" <<'PY'
import json, re, sys

(as_json, runs_dir, repeat, conns, dur, warm, cpus, nginx_version, nginx_workers, size,
 names, arca_log) = sys.argv[1:13]
as_json, repeat = as_json == "1", int(repeat)
names = names.split()
labels = {"arca": "arca", "nginx": "nginx (static file)",
          "arca_inm": "arca, If-None-Match (304)", "nginx_inm": "nginx, If-None-Match (304)",
          "arca_tls": "arca over TLS", "nginx_tls": "nginx over TLS"}

runs = {n: [json.load(open(f"{runs_dir}/{n}.{i}.json")) for i in range(1, repeat + 1)] for n in names}
best = {n: max(rs, key=lambda r: r["requests_per_s"]) for n, rs in runs.items()}
keep = ("requests_per_s", "p50_us", "p90_us", "p99_us", "max_us", "mean_us", "requests", "status_304",
        "other_status", "errors", "reconnects", "first_error", "server_cpu_cores",
        "server_cpu_us_per_request", "load_cpu_cores", "machine_busy_cores", "client")

def wrk(path):
    text = open(path).read()
    def dur_us(s):
        v, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s).groups()
        return float(v) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 6e7}[unit]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {"requests_per_s": float(rate.group(1)) if rate else None,
            "p50_us": dur_us(p["50"]) if "50" in p else None,
            "p99_us": dur_us(p["99"]) if "99" in p else None,
            "non_2xx_3xx": int(errs.group(1)) if errs else 0,
            "socket_errors": sum(map(int, sock.groups())) if sock else 0}
wrk_figs = {}
for a in sys.argv[13:]:
    n, _, path = a.partition("=")
    wrk_figs[n] = wrk(path)

ratios, targets = {}, {}
def judge(suffix, label, floor=0.5):
    a, n = best.get("arca" + suffix), best.get("nginx" + suffix)
    if not a or not n:
        return
    r = round(a["requests_per_s"] / n["requests_per_s"], 3) if n["requests_per_s"] else 0.0
    ratios["arca_vs_nginx_rate" + suffix] = r
    targets[f"rate_ratio>={floor}" + suffix] = r >= floor
    targets["arca_p99<10ms" + suffix] = a["p99_us"] < 10_000
    lines.append((f"arca / nginx requests/s{label}", f"{r:.2f}", f"target >= {floor}", r >= floor))
    lines.append((f"arca p99{label}", f"{a['p99_us'] / 1000:.2f} ms", "target < 10 ms",
                  a["p99_us"] < 10_000))
lines = []
judge("", "")
judge("_inm", " (If-None-Match)")
judge("_tls", " (TLS)", 0.8)
if "arca_inm" in best and "nginx" in best and best["nginx"]["requests_per_s"]:
    ratios["arca_inm_vs_nginx_rate"] = round(
        best["arca_inm"]["requests_per_s"] / best["nginx"]["requests_per_s"], 3)

out = {
    "connections": int(conns), "duration_s": int(dur), "warmup_s": int(warm), "repeat": repeat,
    "cpus": int(cpus), "nginx_version": nginx_version, "nginx_worker_processes": nginx_workers,
    "timestamp_json_bytes": int(size), "arca_rust_log": arca_log,
    "best": {n: {k: b.get(k) for k in keep} for n, b in best.items()},
    "rates_per_run": {n: [r["requests_per_s"] for r in rs] for n, rs in runs.items()},
    "ratios": ratios, "targets_met": targets,
    "if_none_match": "arca_inm" in best,
}
if wrk_figs:
    out["wrk"] = wrk_figs
if as_json:
    print(json.dumps(out, sort_keys=True))
    sys.exit(0)

ms = lambda us: f"{us / 1000:.2f}"
print(f"GET timestamp.json ({size} bytes): {conns} connections, {dur} s after {warm} s warm-up, "
      f"best of {repeat}; {cpus} CPUs shared by server and load generator")
head = ("target", "requests/s", "p50 ms", "p99 ms", "max ms", "errors", "srv CPU", "srv µs/req",
        "load CPU", "busy")
fmt = "{:<28} {:>11} {:>7} {:>7} {:>7} {:>6} {:>7} {:>10} {:>8} {:>5}"
print(fmt.format(*head))
for n in names:
    b = best[n]
    per, load = b["server_cpu_us_per_request"], b["load_cpu_cores"]
    print(fmt.format(labels.get(n, n), f"{b['requests_per_s']:.0f}", ms(b["p50_us"]), ms(b["p99_us"]),
                     ms(b["max_us"]), b["errors"] + b["other_status"], f"{b['server_cpu_cores']:.2f}",
                     "-" if per is None else f"{per:.1f}", "-" if load is None else f"{load:.2f}",
                     f"{b['machine_busy_cores']:.2f}"))
for n, w in wrk_figs.items():
    print(fmt.format(f"wrk: {labels.get(n, n)}",
                     f"{w['requests_per_s']:.0f}" if w["requests_per_s"] else "-",
                     ms(w["p50_us"]) if w["p50_us"] else "-", ms(w["p99_us"]) if w["p99_us"] else "-",
                     "-", w["non_2xx_3xx"] + w["socket_errors"], "-", "-", "-", "-"))
if "arca_inm" not in best:
    print("If-None-Match: not measured (arca sent no ETag)")
for label, value, target, ok in lines:
    print(f"{label + ':':<42} {value:>9}  ({target}: {'PASS' if ok else 'FAIL'})")
if "arca_inm_vs_nginx_rate" in ratios:
    print(f"{'arca with If-None-Match / plain nginx:':<42} {ratios['arca_inm_vs_nginx_rate']:>9.2f}")
print(f"arca RUST_LOG={arca_log}; nginx {nginx_version}, worker_processes {nginx_workers}. errors: transport errors + statuses "
      f"other than 2xx/304; srv CPU, load CPU: cores used by the server / the load generator; "
      f"busy: cores the whole machine used (others' work included)")
PY
