#!/usr/bin/env bash
# Instructions per request, modelops against the limit handler, counted by
# callgrind: the noise-free companion of run.sh's CPU-time ratios (these
# machines are shared; instruction counts do not depend on what else runs).
# It counts user-space instructions only: no kernel time, no cache misses,
# so it shows where the CPU goes, while run.sh shows what it costs.
#
# Usage: bench/load/instructions.sh        (about 3 minutes plus the build)
# Environment: INSTR_ROWS (default "1 64"), INSTR_SECONDS of wrk load under
# callgrind per server and body (default 15), CARGO_TARGET_DIR.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/modelops/target}
ROWS=${INSTR_ROWS:-"1 64"}
SECONDS_PER_RUN=${INSTR_SECONDS:-15}
command -v valgrind >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && apt-get install -y -qq valgrind wrk >/dev/null
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo build --release --quiet -p serve --bin serve -p bench --bin limit_handler
cp "$CARGO_TARGET_DIR/release/serve" "$CARGO_TARGET_DIR/release/limit_handler" "$WORK/"
python3 "$HERE/loadtool.py" bodies models/iris/test.csv "$WORK/bodies" >/dev/null
mkdir -p "$WORK/models" && ln -s "$REPO/models/iris" "$WORK/models/iris"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# measure NAME ROWS: prints instructions per request (whole process, start-up
# included, so the start-up alone is measured and subtracted too).
measure() {
  local name=$1 rows=$2 p args out
  p=$(port)
  case $name in
    limit) args=("$WORK/limit_handler" --port "$p" --workers 1) ;;
    modelops) args=("$WORK/serve" --models "$WORK/models" --port "$p" --workers 1
                    --drain-seconds 0 --log warn --telemetry off) ;;
  esac
  out="$WORK/$name-$rows"
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "${args[@]}" >"$out.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$p/v2/health/ready" >/dev/null && break
    sleep 0.5
  done
  local requests=0
  if [ "$rows" != 0 ]; then
    LOAD_BODY="$WORK/bodies/body-$rows.json" wrk -t1 -c32 -d"${SECONDS_PER_RUN}s" \
      -s "$HERE/post.lua" "http://127.0.0.1:$p/v2/models/iris/infer" >"$out.wrk"
    requests=$(grep -o '"requests":[0-9]*' "$out.wrk" | cut -d: -f2)
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  local total
  total=$(grep -m1 '^summary:\|^totals:' "$out.cg" | awk '{print $2}')
  echo "$total $requests"
}

printf '| rows per request | limit instr/request | modelops instr/request | limit / modelops |\n'
printf '| ---: | ---: | ---: | ---: |\n'
declare -A startup
for name in limit modelops; do
  read -r total _ < <(measure "$name" 0)
  startup[$name]=$total
done
for rows in $ROWS; do
  declare -A per
  for name in limit modelops; do
    read -r total requests < <(measure "$name" "$rows")
    per[$name]=$(( (total - ${startup[$name]}) / requests ))
  done
  ratio=$(python3 -c "print(f'{${per[limit]} / ${per[modelops]}:.1%}')")
  printf '| %s | %d | %d | %s |\n' "$rows" "${per[limit]}" "${per[modelops]}" "$ratio"
done
