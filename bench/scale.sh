#!/usr/bin/env bash
# Several-servers benchmark (not run in CI): 1, 2 and 3 arca servers on one PostgreSQL database
# and one S3 bucket, against one server on SQLite, in the same run, on the same bucket.
#
# Every configuration gets a fresh database (or SQLite home) and its own prefix of one moto S3
# bucket; further PostgreSQL servers are made with `arca init --join`. For each configuration:
#   polls       examples/poll_load polls dev's timestamp.json with CONNECTIONS keep-alive
#               connections spread over the servers (--also): requests/s summed, p99;
#   pushes      PUSHES artifacts of 1 MiB (each its own bytes) pushed with `arca push` by
#               PUSH_WORKERS workers, worker k through server k mod N;
#   promotions  each pushed release promoted to staging by PROMOTE_WORKERS workers, spread the
#               same way;
# and the servers' CPU time per request of each kind (utime + stime of every server process over
# the measured window, from /proc/PID/stat). While pushes and promotions run, a checker polls
# dev's and staging's timestamp.json from every server in turn and counts any version lower
# than one already served (a replay) and any answer other than 200.
# Targets (ratios of the same run; absolute scaling says little on a 2-core machine where the
# load generator, the database, moto and the servers share the cores):
#   CPU per poll on PostgreSQL (each server count) / CPU per poll on SQLite   target <= 1.3
#   errors and replayed versions, at every server count                       target  = 0
# A missed target is reported, not an error: the exit status is 0 unless something failed.
#
# Usage: bench/scale.sh [--json]
# Env:   SERVERS="1 2 3"   PostgreSQL server counts to run
#        CONNECTIONS=64    poll connections (spread over the servers)
#        DURATION=10       measured seconds of polling (whole seconds)
#        WARMUP=2          seconds of polling before measuring (whole seconds)
#        PUSHES=24         artifacts pushed (and then promoted) per configuration
#        PUSH_WORKERS=4  PROMOTE_WORKERS=4
#        ARCA_BIN=PATH  POLL_LOAD_BIN=PATH   prebuilt binaries instead of building them
#        BENCH_TMP=DIR     parent of the scratch directory;  KEEP_TMP=1 keeps it
#        RUST_LOG=info     the servers' log filter (as in production)
# Progress goes to stderr; the table (or, with --json, one JSON object) to stdout.
set -euo pipefail
export LC_ALL=C

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
bench_args "${BASH_SOURCE[0]}" "$@"

SERVERS="${SERVERS:-1 2 3}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
PUSHES="${PUSHES:-24}"
PUSH_WORKERS="${PUSH_WORKERS:-4}"
PROMOTE_WORKERS="${PROMOTE_WORKERS:-4}"
export RUST_LOG="${RUST_LOG:-info}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

TMP="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/arca-scale.XXXXXX")"
PG_DIR=""
stop_pg() { [[ -n "$PG_DIR" ]] && "$REPO/scripts/pg.sh" stop "$PG_DIR" >/dev/null 2>&1 || true; }
trap 'stop_pg; cleanup' EXIT

# ---------------------------------------------------------------- binaries and peers
ARCA="${ARCA_BIN:-}"
LOAD="${POLL_LOAD_BIN:-}"
if [[ -z "$ARCA" || -z "$LOAD" ]]; then
    log "building arca and poll_load (release)"
    (cd "$REPO" && cargo build --release -q --bin arca --example poll_load) >&2
    ARCA="${ARCA:-$REPO/target/release/arca}"
    LOAD="${LOAD:-$REPO/target/release/examples/poll_load}"
fi
"$REPO/scripts/test-env.sh" >&2 # moto_server in the venv, PostgreSQL 15
MOTO_BIN="$REPO/.test-env/venv/bin/moto_server"

MOTO_PORT="$(free_port)"
"$MOTO_BIN" -H 127.0.0.1 -p "$MOTO_PORT" >"$TMP/moto.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOTO_PORT/" 60 || die "moto_server did not start (see $TMP/moto.log)"
BUCKET=arca-bench
curl -fs -X PUT "http://127.0.0.1:$MOTO_PORT/$BUCKET" >/dev/null || die "cannot create the bucket"
export AWS_ENDPOINT="http://127.0.0.1:$MOTO_PORT" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing

# Beside the scratch directory, not in it: PostgreSQL runs as its own user, which cannot enter
# a private mktemp directory.
PG_DIR="$(mktemp -d "${BENCH_TMP:-${TMPDIR:-/tmp}}/arca-scale-pg.XXXXXX")"
PG_ADMIN="$(PG_DURABLE=1 "$REPO/scripts/pg.sh" start "$PG_DIR")"
log "PostgreSQL at $PG_ADMIN (durable), moto S3 at $AWS_ENDPOINT"

export ARCA_KEY_PASSPHRASE="bench only"
"$ARCA" key gen --unencrypted --out "$TMP/builder.key" >/dev/null

# ---------------------------------------------------------------- helpers

# serve HOME: starts `arca serve` on a free port; sets SERVED_URL and SERVED_PID.
serve() {
    local home="$1" port
    port="$(free_port)"
    "$ARCA" serve --home "$home" --listen "127.0.0.1:$port" >>"$home.log" 2>&1 &
    SERVED_PID=$!
    PIDS+=("$SERVED_PID")
    SERVED_URL="http://127.0.0.1:$port"
    local i
    for ((i = 0; i < 600; i++)); do
        if curl -fs -o /dev/null --max-time 1 "$SERVED_URL/readyz"; then return 0; fi
        kill -0 "$SERVED_PID" 2>/dev/null || die "arca serve --home $home exited (see $home.log)"
        sleep 0.1
    done
    die "arca serve --home $home is not ready after 60 s (see $home.log)"
}

# checker OUT URL...: starts, in the background (its pid in CHECK_PID), a loop that fetches
# dev's and staging's timestamp.json from each URL in turn until SIGTERM, then writes
# {"requests", "errors", "replays"} to OUT.
checker() {
    python3 - "$@" <<'PY' &
import json, signal, sys, time, urllib.request
out, urls = sys.argv[1], sys.argv[2:]
seen, n, errors, replays = {}, 0, 0, 0
def done(*_):
    json.dump({"requests": n, "errors": errors, "replays": replays}, open(out, "w"))
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    for url in urls:
        for ch in ("dev", "staging"):
            n += 1
            try:
                with urllib.request.urlopen(f"{url}/tuf/{ch}/metadata/timestamp.json", timeout=10) as r:
                    v = json.load(r)["signed"]["version"]
            except Exception:
                errors += 1
                continue
            if v < seen.get(ch, 0):
                replays += 1
            seen[ch] = max(seen.get(ch, 0), v)
    time.sleep(0.02)  # ~100 checks a second: a witness, not a load
PY
    CHECK_PID=$!
}

# run_config LABEL ENGINE COUNT: sets up ENGINE (sqlite|postgres) with COUNT servers, measures,
# appends one JSON line to $TMP/results.jsonl, stops the servers.
run_config() {
    local label="$1" engine="$2" count="$3" dir="$TMP/$1"
    mkdir -p "$dir"
    local urls=() pids=() i
    local store="s3://$BUCKET/$label"
    if [[ "$engine" == sqlite ]]; then
        mkdir -p "$dir/h1"
        printf '[store]\nurl = "%s"\n' "$store" >"$dir/h1/arca.toml"
        "$ARCA" init --home "$dir/h1" >/dev/null
        serve "$dir/h1"
        urls+=("$SERVED_URL") && pids+=("$SERVED_PID")
    else
        local db="arca_$label"
        "$PG_BIN/psql" -q "$PG_ADMIN/postgres" -c "CREATE DATABASE $db" >/dev/null
        local url="$PG_ADMIN/$db"
        "$ARCA" init --home "$dir/h1" --database "$url" --store "$store" >/dev/null
        for ((i = 2; i <= count; i++)); do
            "$ARCA" init --home "$dir/h$i" --join --database "$url" --store "$store" \
                --master-key "$dir/h1/master.key" >/dev/null
        done
        for ((i = 1; i <= count; i++)); do
            serve "$dir/h$i"
            urls+=("$SERVED_URL") && pids+=("$SERVED_PID")
        done
    fi
    export ARCA_TOKEN
    ARCA_TOKEN="$(cat "$dir/h1/admin.token")"
    ARCA_SERVER="${urls[0]}" "$ARCA" trust add-key "$TMP/builder.key.pub" --role builder \
        --scope '**' --label bench --sign "$dir/h1/keys/root.key" >/dev/null
    log "$label: ${#urls[@]} server(s) up: ${urls[*]}"

    # Polls, spread over the servers.
    local also=() u
    for u in "${urls[@]:1}"; do also+=(--also "$u/tuf/dev/metadata/timestamp.json"); done
    "$LOAD" "${urls[0]}/tuf/dev/metadata/timestamp.json" "${also[@]}" \
        --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" --json \
        >"$dir/poll.json" &
    local load=$!
    sleep "$WARMUP"
    local c0 c1
    c0="$(cpu_ticks "${pids[@]}")"
    sleep "$DURATION"
    c1="$(cpu_ticks "${pids[@]}")"
    wait "$load" || die "$label: poll_load failed"
    local poll_cpu=$((c1 - c0))

    # Pushes and promotions, with the replay checker running.
    checker "$dir/checker.json" "${urls[@]}"
    local check=$CHECK_PID
    for ((i = 0; i < PUSHES; i++)); do
        head -c 1048576 /dev/urandom >"$dir/a$i.bin"
    done
    work() { # work KIND WORKERS: runs every item's command, worker k through server k mod N
        local kind="$1" workers="$2" w wpids=()
        for ((w = 0; w < workers; w++)); do
            (
                local s="${urls[$((w % ${#urls[@]}))]}" j fails=0
                for ((j = w; j < PUSHES; j += workers)); do
                    if [[ "$kind" == push ]]; then
                        ARCA_SERVER="$s" "$ARCA" push "$dir/a$j.bin" "bench/a$j@1.0.0" \
                            --key "$TMP/builder.key" >/dev/null 2>>"$dir/errors.log" || fails=$((fails + 1))
                    else
                        ARCA_SERVER="$s" "$ARCA" promote "bench/a$j@1.0.0" --to staging \
                            >/dev/null 2>>"$dir/errors.log" || fails=$((fails + 1))
                    fi
                done
                echo "$fails" >"$dir/$kind.$w.fails"
            ) &
            wpids+=($!)
        done
        wait "${wpids[@]}" # not a bare wait: the checker runs in the background too
    }
    local t0 t1 t2 c2 c3
    c0="$(cpu_ticks "${pids[@]}")"
    t0="$(date +%s.%N)"
    work push "$PUSH_WORKERS"
    t1="$(date +%s.%N)"
    c2="$(cpu_ticks "${pids[@]}")"
    work promote "$PROMOTE_WORKERS"
    t2="$(date +%s.%N)"
    c3="$(cpu_ticks "${pids[@]}")"
    kill -TERM "$check"
    wait "$check" || true
    local fails=0 f
    for f in "$dir"/*.fails; do fails=$((fails + $(cat "$f"))); done

    python3 - "$label" "$engine" "${#urls[@]}" "$dir/poll.json" "$dir/checker.json" \
        "$poll_cpu" "$((c2 - c0))" "$((c3 - c2))" "$t0" "$t1" "$t2" "$PUSHES" "$CLK_TCK" "$fails" \
        >>"$TMP/results.jsonl" <<'PY'
import json, sys
(label, engine, n, poll, check, poll_cpu, push_cpu, prom_cpu, t0, t1, t2, pushes, hz, fails) = sys.argv[1:]
poll, check = json.load(open(poll)), json.load(open(check))
hz, pushes = int(hz), int(pushes)
polls = poll["requests"]
print(json.dumps({
    "config": label, "engine": engine, "servers": int(n),
    "polls_per_s": poll["requests_per_s"], "poll_p99_ms": poll["p99_us"] / 1000,
    "poll_errors": poll["errors"] + poll["other_status"],
    "cpu_us_per_poll": round(int(poll_cpu) / hz * 1e6 / max(polls, 1), 1),
    "pushes_per_s": round(pushes / (float(t1) - float(t0)), 2),
    "cpu_ms_per_push": round(int(push_cpu) / hz * 1e3 / pushes, 1),
    "promotions_per_s": round(pushes / (float(t2) - float(t1)), 2),
    "cpu_ms_per_promotion": round(int(prom_cpu) / hz * 1e3 / pushes, 1),
    "failed_commands": int(fails),
    "checker_requests": check["requests"], "checker_errors": check["errors"],
    "replays": check["replays"],
}))
PY
    for u in "${pids[@]}"; do kill "$u" 2>/dev/null || true; done
    for u in "${pids[@]}"; do wait "$u" 2>/dev/null || true; done
    log "$label: $(tail -1 "$TMP/results.jsonl")"
}

run_config sqlite sqlite 1
for n in $SERVERS; do
    run_config "pg$n" postgres "$n"
done

python3 - "$TMP/results.jsonl" "$JSON" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]["cpu_us_per_poll"] or 1
for r in rows:
    r["cpu_per_poll_vs_sqlite"] = round(r["cpu_us_per_poll"] / base, 2)
pg = [r for r in rows if r["engine"] == "postgres"]
ok_cpu = all(r["cpu_per_poll_vs_sqlite"] <= 1.3 for r in pg)
clean = all(r["poll_errors"] == 0 and r["failed_commands"] == 0 and r["checker_errors"] == 0
            and r["replays"] == 0 for r in rows)
if sys.argv[2] == "1":
    print(json.dumps({"rows": rows, "cpu_per_poll_target_met": ok_cpu, "no_errors_or_replays": clean}))
    sys.exit(0)
cols = [("config", "config"), ("servers", "servers"), ("polls/s", "polls_per_s"),
        ("p99 ms", "poll_p99_ms"), ("CPU us/poll", "cpu_us_per_poll"),
        ("vs SQLite", "cpu_per_poll_vs_sqlite"), ("pushes/s", "pushes_per_s"),
        ("CPU ms/push", "cpu_ms_per_push"), ("promotions/s", "promotions_per_s"),
        ("CPU ms/promotion", "cpu_ms_per_promotion"), ("failed", "failed_commands"),
        ("checks", "checker_requests"), ("replays", "replays")]
print(" | ".join(c for c, _ in cols))
for r in rows:
    print(" | ".join(str(r[k]) for _, k in cols))
print(f"CPU per poll on PostgreSQL within 1.3x SQLite's: {'met' if ok_cpu else 'MISSED'}")
print(f"no error or replayed version at any server count: {'met' if clean else 'MISSED'}")
PY
