#!/usr/bin/env bash
# REST throughput with telemetry off, to the JSON-lines file, and to Cosmos DB
# (scripts/cosmos-server), side by side in one run: rounds of off / file /
# cosmos, each a fresh `serve --workers 1` pinned to one core and wrk pinned
# to the other. The Cosmos DB server stands in for a remote service, which
# takes no CPU of the machine under test. On two cores it has to share one,
# so it answers batches without storing them (its discard_writes switch):
# storing costs it about 30 µs of CPU a document, six times what writing it
# costs serve, and that CPU came out of wrk's core (capping the cosmos runs'
# load) or out of the server's. It runs on the load generator's core at
# normal priority, so that it answers as promptly as a remote service
# would (answering costs it 2-8 % of the core at 32 connections); at
# low priority wrk starved it, its slow answers held the telemetry writer
# back, and fewer documents written flattered the ratio. The headline is
# each mode's requests/s over off's, with requests per server CPU-second
# (every thread of serve, its telemetry writer's too) beside it.
#
# Usage: flock /tmp/modelops-bench.lock bench/telemetry/run.sh
# Environment (all optional):
#   TELEMETRY_ROUNDS       rounds of the three modes (default 3)
#   TELEMETRY_DURATION     seconds measured per run (default 10)
#   TELEMETRY_WARMUP       seconds of load before measuring (default 2)
#   TELEMETRY_CONNECTIONS  wrk connections (default 32)
#   TELEMETRY_ROWS         rows per request: 1 or 64 (default 1)
#   TELEMETRY_SERVER_CPU / TELEMETRY_CLIENT_CPU  cores (default 0 / 1)
#   TELEMETRY_COSMOS_STORE 1: the Cosmos DB server stores the documents (default 0)
#   CARGO_TARGET_DIR       (default /var/cache/modelops/target)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

ROUNDS=${TELEMETRY_ROUNDS:-3}
DURATION=${TELEMETRY_DURATION:-10}
WARMUP=${TELEMETRY_WARMUP:-2}
CONNECTIONS=${TELEMETRY_CONNECTIONS:-32}
ROWS=${TELEMETRY_ROWS:-1}
SERVER_CPU=${TELEMETRY_SERVER_CPU:-0}
CLIENT_CPU=${TELEMETRY_CLIENT_CPU:-1}
COSMOS_STORE=${TELEMETRY_COSMOS_STORE:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/modelops/target}
TOOL="python3 $REPO/bench/load/loadtool.py"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
}

WORK=$(mktemp -d)
SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
cleanup() {
  stop_server
  scripts/cosmos-server/run stop "$WORK/cosmos" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# release-fast: release code without fat LTO (minutes instead of tens of
# minutes on two cores); the same binary serves every mode.
log "building serve (profile release-fast)"
cargo build --profile release-fast --quiet -p serve --bin serve
cp "$CARGO_TARGET_DIR/release-fast/serve" "$WORK/serve"
$TOOL bodies models/iris/test.csv "$WORK/bodies"

taskset -c "$CLIENT_CPU" scripts/cosmos-server/run start "$WORK/cosmos" >/dev/null
endpoint=$(cat "$WORK/cosmos/endpoint")
if [ "$COSMOS_STORE" = 1 ]; then
  log "Cosmos DB server $endpoint on core $CLIENT_CPU, storing documents"
else
  curl -sf -X POST "$(cat "$WORK/cosmos/control")" -d '{"discard_writes": true}' >/dev/null
  log "Cosmos DB server $endpoint on core $CLIENT_CPU, answering batches without storing them"
fi

# The telemetry writer thread's CPU time so far, in ns (0 when it has none).
writer_ns() {
  local task
  for task in /proc/"$1"/task/*; do
    [ "$(cat "$task/comm")" = telemetry ] && { cut -d' ' -f1 "$task/schedstat"; return; }
  done
  echo 0
}

# metric_total PORT NAME: the sum of NAME's series in the server's /metrics.
metric_total() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 ~ "^" name {s+=$2} END {print s+0}'
}

# measure MODE: one fresh server, warm-up, one measured wrk run; prints
# "MODE REQUESTS_PER_S WRITTEN DROPPED REQUESTS_PER_CPU_S WRITER_US_PER_DOCUMENT".
measure() {
  local mode=$1 port args=()
  port=$($TOOL ports 1)
  case $mode in
    off) args=(--telemetry off) ;;
    file) args=(--telemetry file --telemetry-file "$WORK/predictions-$RANDOM.jsonl") ;;
    cosmos) args=(--telemetry cosmos --cosmos-endpoint "$endpoint"
                  --cosmos-container "bench-$RANDOM") ;;
  esac
  COSMOS_KEY=C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw== \
  COSMOS_DISABLE_IMDS=1 AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED=false \
  AZURE_COSMOS_BINARY_ENCODING_ENABLED=false SSL_CERT_FILE="$WORK/cosmos/ca.pem" \
    setsid taskset -c "$SERVER_CPU" "$WORK/serve" --models models --port "$port" --workers 1 \
    --drain-seconds 0 --telemetry-flush-seconds 0 --log warn "${args[@]}" \
    >"$WORK/serve-$mode.log" 2>&1 </dev/null &
  SERVER_PID=$!
  $TOOL ready "http://127.0.0.1:$port/v2/health/ready" "$SERVER_PID" 60 >/dev/null
  local url="http://127.0.0.1:$port/v2/models/iris/infer"
  LOAD_BODY="$WORK/bodies/body-$ROWS.json" taskset -c "$CLIENT_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" -s bench/load/post.lua "$url" >/dev/null
  local out requests duration_us errors ticks_before ticks_after
  local writer_before writer_after written_before written_after
  # The server's CPU time (every thread, the telemetry writer's too) over
  # the measured run, and the writer's own per document written in it.
  written_before=$(metric_total "$port" modelops_telemetry_written_total)
  writer_before=$(writer_ns "$SERVER_PID")
  ticks_before=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  out=$(LOAD_BODY="$WORK/bodies/body-$ROWS.json" taskset -c "$CLIENT_CPU" \
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s bench/load/post.lua "$url" | grep '^WRKJSON')
  ticks_after=$(awk '{print $14 + $15}' "/proc/$SERVER_PID/stat")
  writer_after=$(writer_ns "$SERVER_PID")
  written_after=$(metric_total "$port" modelops_telemetry_written_total)
  read -r requests duration_us errors < <(echo "${out#WRKJSON }" | python3 -c \
    'import json,sys; r=json.load(sys.stdin); print(r["requests"], r["duration_us"], r["errors_status"]+r["errors_connect"]+r["errors_read"]+r["errors_timeout"])')
  [ "$errors" = 0 ] || { log "$mode: $errors wrk errors"; return 1; }
  local dropped
  dropped=$(metric_total "$port" modelops_telemetry_dropped_total)
  stop_server
  echo "$mode $(python3 -c "print(round($requests / ($duration_us / 1e6)))") $written_after $dropped" \
    "$(python3 -c "print(round($requests / (($ticks_after - $ticks_before) / $(getconf CLK_TCK))))")" \
    "$(python3 -c "print(round(($writer_after - $writer_before) / 1e3 / max($written_after - $written_before, 1), 2))")"
}

results="$WORK/results.txt"
for round in $(seq "$ROUNDS"); do
  for mode in off file cosmos; do
    line=$(measure "$mode")
    log "round $round: $line (requests/s, documents written, dropped, requests per server CPU-second, writer CPU µs per document)"
    echo "$line" >>"$results"
  done
done

python3 - "$results" "$ROWS" "$CONNECTIONS" "$DURATION" <<'EOF'
import statistics, sys
path, rows, connections, duration = sys.argv[1:]
runs = {}
for line in open(path):
    mode, rps, written, dropped, per_cpu, writer_us = line.split()
    runs.setdefault(mode, []).append(
        (int(rps), float(written), float(dropped), int(per_cpu), float(writer_us)))
print(f"{rows}-row V2 requests, {connections} connections, {duration} s per run, "
      f"{len(runs['off'])} rounds of off / file / cosmos (median of per-round ratios to off):")
print("  mode    req/s   ratio  req per server CPU-s  ratio  writer µs/doc  documents written (median per run)")
for mode in ("off", "file", "cosmos"):
    ratio = lambda i: statistics.median(r[i] / o[i] for r, o in zip(runs[mode], runs["off"]))
    rps = statistics.median(r[0] for r in runs[mode])
    per_cpu = statistics.median(r[3] for r in runs[mode])
    written = statistics.median(r[1] for r in runs[mode])
    dropped = statistics.median(r[2] for r in runs[mode])
    writer_us = statistics.median(r[4] for r in runs[mode]) if mode != "off" else float("nan")
    share = written / max(written + dropped, 1)
    print(f"  {mode:<7} {rps:>6.0f}  {ratio(0):.3f}  {per_cpu:>19.0f}  {ratio(3):.3f}  "
          f"{writer_us:>13.2f}  "
          f"{written:.0f} of {written + dropped:.0f} ({share:.0%}; the rest dropped and counted)")
EOF

if [ "$COSMOS_STORE" != 1 ]; then
  # Every document serve counted as written reached the server (a few more
  # may have, written between the last count and the server's stop).
  received=$(curl -sf "$(cat "$WORK/cosmos/control")" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counters"]["discarded"])')
  counted=$(awk '$1 == "cosmos" {s += $3} END {print s + 0}' "$results")
  echo "  the Cosmos DB server received $received documents; serve counted $counted written when measured"
  [ "$received" -ge "$counted" ] || { log "documents counted as written never reached the server"; exit 1; }
fi
