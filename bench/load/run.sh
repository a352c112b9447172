#!/usr/bin/env bash
# Side-by-side HTTP load benchmark of modelops against a no-inference actix-web
# handler ("the limit") and the usual Python model servers, all serving the
# iris model, in one run. See bench/load/README.md.
#
# Usage: bench/load/run.sh
# Environment (all optional):
#   LOAD_SERVERS      servers to run, in order (default: all, see below)
#   LOAD_DURATION     seconds measured per scenario (default 8)
#   LOAD_WARMUP       seconds of warm-up before each scenario (default 2)
#   LOAD_QUIET_WAIT   before each scenario, wait up to this many seconds for the
#                     rest of the machine to go idle (default 90; 0: don't)
#   LOAD_CONNECTIONS  connection counts (default "1 32")
#   LOAD_ROWS         rows per request (default "1 64")
#   LOAD_SERVER_CPU   core the server is pinned to (default 0)
#   LOAD_CLIENT_CPU   core wrk is pinned to (default 1)
#   LOAD_VENVS        where the Python venvs live (default /var/cache/modelops/load-venvs)
#   LOAD_WORK         scratch + logs (default /var/cache/modelops/load-work)
#   CARGO_TARGET_DIR  (default /var/cache/modelops/target)
#   LOAD_NO_REPORT=1  only measure; do not rewrite results.json / README / plot
set -euo pipefail
started=$(date +%s)
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

ALL_SERVERS="limit modelops fastapi flask mlserver kserve modelops-default modelops-aa"
SERVERS=${LOAD_SERVERS:-$ALL_SERVERS}
DURATION=${LOAD_DURATION:-8}
WARMUP=${LOAD_WARMUP:-2}
QUIET_WAIT=${LOAD_QUIET_WAIT:-90}
CONNECTIONS=${LOAD_CONNECTIONS:-"1 32"}
ROWS=${LOAD_ROWS:-"1 64"}
SERVER_CPU=${LOAD_SERVER_CPU:-0}
CLIENT_CPU=${LOAD_CLIENT_CPU:-1}
VENVS=${LOAD_VENVS:-/var/cache/modelops/load-venvs}
WORK=${LOAD_WORK:-/var/cache/modelops/load-work}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/modelops/target}
READY_TIMEOUT=120   # seconds a server gets to become ready
STOP_TIMEOUT=15     # seconds a server gets to exit on SIGTERM before SIGKILL
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# ------------------------------------------------------------ cleanup ----
SERVER_PID=""
stop_server() {
  local pid=$SERVER_PID
  [ -n "$pid" ] || return 0
  SERVER_PID=""
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "server $pid ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # The server was started with setsid, so its process group id is its pid:
  # take down any worker it left behind.
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap 'stop_server' EXIT
trap 'log "interrupted"; stop_server; exit 130' INT TERM

# -------------------------------------------------------------- setup ----
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk; then
  log "installing wrk (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
need taskset || { echo "taskset (util-linux) is required" >&2; exit 1; }
need curl || { echo "curl is required" >&2; exit 1; }

# One venv per requirements file; rebuilt only when the file changes.
setup_venv() {
  local name=$1 req="$HERE/requirements-$1.txt" dir="$VENVS/$1"
  if cmp -s "$req" "$dir/requirements.txt" 2>/dev/null; then return 0; fi
  log "venv $name: installing $(grep -c '==' "$req") pinned packages into $dir"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  cp "$req" "$dir/requirements.txt"
}
mkdir -p "$VENVS" "$WORK"
setup_venv report
for s in $SERVERS; do
  case $s in
    fastapi|flask|mlserver|kserve) setup_venv "$s" ;;
  esac
done
if [[ " $SERVERS " == *" mlserver "* || " $SERVERS " == *" kserve "* ]]; then
  setup_venv flask   # trains the joblib model the sklearn peers share
fi
TOOL="$VENVS/report/bin/python $HERE/loadtool.py"

RUN="$WORK/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$RUN/logs" "$RUN/bin"
log "run directory $RUN"

log "building serve and limit_handler (release)"
cargo build --release --quiet -p serve --bin serve -p bench --bin limit_handler
# Private copies: other builds may replace the shared target's binaries mid-run.
cp "$CARGO_TARGET_DIR/release/serve" "$CARGO_TARGET_DIR/release/limit_handler" "$RUN/bin/"

# Request bodies (from models/iris/test.csv) and the model files.
$TOOL bodies "$REPO/models/iris/test.csv" "$RUN/bodies"
mkdir -p "$RUN/models"
ln -s "$REPO/models/iris" "$RUN/models/iris"   # a repository holding iris only
SKLEARN_MODEL="$RUN/iris.joblib"
if [ -x "$VENVS/flask/bin/python" ]; then
  "$VENVS/flask/bin/python" "$HERE/train_sklearn.py" \
    "$REPO/models/iris/train.csv" "$REPO/models/iris/test.csv" "$SKLEARN_MODEL"
fi

# What the Python peers' BLAS does (threadpoolctl), for the record.
PYENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
       OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1)
if [ -x "$VENVS/flask/bin/python" ]; then
  "${PYENV[@]}" "$VENVS/flask/bin/python" -c \
    'import json, numpy, threadpoolctl; print(json.dumps(threadpoolctl.threadpool_info()))' \
    >"$RUN/threadpool.json" 2>/dev/null || true
fi

# --------------------------------------------------------------- meta ----
{
  echo "{"
  echo "  \"started\": \"$(date -u -d @"$started" +%Y-%m-%dT%H:%M:%SZ)\","
  echo "  \"git_rev\": \"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\","
  echo "  \"git_dirty_files_serve\": $(git status --porcelain -- serve 2>/dev/null | wc -l),"
  echo "  \"cpu_model\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')\","
  echo "  \"cores\": $(nproc --all),"
  echo "  \"kernel\": \"$(uname -r)\","
  echo "  \"rustc\": \"$(rustc --version)\","
  echo "  \"python\": \"$("$PYTHON" --version 2>&1)\","
  echo "  \"wrk\": \"$(wrk -v 2>&1 | head -1 | sed 's/"/\\"/g')\","
  echo "  \"duration_s\": $DURATION, \"warmup_s\": $WARMUP,"
  echo "  \"server_cpu\": $SERVER_CPU, \"client_cpu\": $CLIENT_CPU"
  echo "}"
} >"$RUN/meta.json"

# ------------------------------------------------------------ servers ----
# start_<name> PORT...: sets CMD (argv), DIR (cwd), ENVS (extra env), READY
# (readiness URL path) and BODY_SUFFIX; the server is then started by start().
CMD=() ; DIR=$REPO ; ENVS=() ; READY=/v2/health/ready ; BODY_SUFFIX="" ; NPORTS=1

spec() {  # spec NAME PORT [PORT2 PORT3]
  local name=$1 port=$2
  DIR=$REPO; ENVS=(); READY=/v2/health/ready; BODY_SUFFIX=""
  case $name in
    limit)
      CMD=("$RUN/bin/limit_handler" --port "$port" --workers 1) ;;
    # Telemetry off: the Python peers record nothing per prediction;
    # bench/telemetry/run.sh measures what recording costs.
    modelops|modelops-aa)
      CMD=("$RUN/bin/serve" --models "$RUN/models" --port "$port" --workers 1
           --drain-seconds 0 --log warn --telemetry off) ;;
    modelops-default)   # actix's default worker count (one per core it may use)
      CMD=("$RUN/bin/serve" --models "$RUN/models" --port "$port"
           --drain-seconds 0 --log warn --telemetry off) ;;
    fastapi)
      DIR="$HERE/servers"
      ENVS=(LOAD_ONNX_MODEL="$REPO/models/iris/1/model.onnx"
            LOAD_MODEL_TOML="$REPO/models/iris/model.toml")
      CMD=("$VENVS/fastapi/bin/uvicorn" fastapi_ort:app --host 127.0.0.1 --port "$port"
           --workers 1 --no-access-log --log-level warning) ;;
    flask)
      DIR="$HERE/servers"
      ENVS=(LOAD_SKLEARN_MODEL="$SKLEARN_MODEL")
      CMD=("$VENVS/flask/bin/gunicorn" --workers 1 --worker-class sync
           --bind "127.0.0.1:$port" --log-level warning flask_sklearn:app) ;;
    mlserver)
      DIR="$RUN/mlserver"
      READY=/v2/models/iris/ready
      BODY_SUFFIX=.mlserver
      mkdir -p "$DIR/iris"
      cp "$SKLEARN_MODEL" "$DIR/iris/model.joblib"
      cat >"$DIR/iris/model-settings.json" <<EOF
{"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
 "parameters": {"uri": "./model.joblib", "version": "1"}}
EOF
      # parallel_workers 0: inference in the server process itself, no pool
      # of worker processes; one process on one core.
      cat >"$DIR/settings.json" <<EOF
{"host": "127.0.0.1", "http_port": $port, "grpc_port": $3, "metrics_port": $4,
 "parallel_workers": 0, "debug": false}
EOF
      CMD=("$VENVS/mlserver/bin/mlserver" start .) ;;
    kserve)
      DIR="$HERE/servers"
      ENVS=(LOAD_SKLEARN_MODEL="$SKLEARN_MODEL")
      CMD=("$VENVS/kserve/bin/python" kserve_sklearn.py --http_port "$port"
           --grpc_port "$3" --workers 1 --enable_grpc false
           --enable_latency_logging false) ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
}

start() {  # start NAME LOGFILE: runs CMD in DIR pinned to SERVER_CPU
  local name=$1 logfile=$2
  (
    cd "$DIR"
    exec setsid taskset -c "$SERVER_CPU" "${PYENV[@]}" "${ENVS[@]}" "${CMD[@]}"
  ) >"$logfile" 2>&1 </dev/null &
  SERVER_PID=$!
  echo "{\"server\": \"$name\", \"pid\": $SERVER_PID, \"cwd\": \"$DIR\", \"command\": \"${CMD[*]}\"}" \
    >>"$RUN/servers.jsonl"
}

run_server() {
  local name=$1 ports port
  ports=$($TOOL ports 3) || return 1
  read -r port p2 p3 <<<"$ports"
  spec "$name" "$port" "$p2" "$p3" || return 1
  local url="http://127.0.0.1:$port"
  log "== $name: ${CMD[*]}"
  start "$name" "$RUN/logs/$name.log"
  if ! $TOOL ready "$url$READY" "$SERVER_PID" "$READY_TIMEOUT"; then
    tail -20 "$RUN/logs/$name.log" >&2; return 1
  fi
  # The pid we hold must be the server itself, not a wrapper.
  log "   ready: pid $SERVER_PID ($(cat /proc/"$SERVER_PID"/comm)), affinity $(taskset -cp "$SERVER_PID" | sed 's/.*: //'), $(grep Threads /proc/"$SERVER_PID"/status | cut -f2) threads"
  local canned=(); [ "$name" = limit ] && canned=(--canned)
  $TOOL check "${canned[@]}" "$name" "$url/v2/models/iris/infer" "$RUN/bodies" >>"$RUN/checks.jsonl" || return 1
  local c r
  for c in $CONNECTIONS; do
    for r in $ROWS; do
      timeout $((DURATION + WARMUP + ${QUIET_WAIT%.*} + 90)) taskset -c "$CLIENT_CPU" $TOOL measure \
        --server "$name" --pid "$SERVER_PID" --url "$url/v2/models/iris/infer" \
        --body "$RUN/bodies/body-$r$BODY_SUFFIX.json" --rows "$r" --connections "$c" \
        --duration "$DURATION" --warmup "$WARMUP" --quiet-wait "$QUIET_WAIT" --out "$RUN/results.jsonl" || return 1
    done
  done
  stop_server
}

for s in $SERVERS; do
  if ! run_server "$s"; then
    log "!! $s failed; see $RUN/logs/$s.log"
    echo "{\"server\": \"$s\", \"error\": \"failed; see logs/$s.log\"}" >>"$RUN/failures.jsonl"
  fi
  stop_server
done

finished=$(date +%s)
log "measured in $((finished - started)) s"
echo "{\"total_seconds\": $((finished - started))}" >"$RUN/timing.json"
ln -sfn "$RUN" "$WORK/latest"
if [ "${LOAD_NO_REPORT:-0}" != 1 ]; then
  "$VENVS/report/bin/python" "$HERE/report.py" "$RUN"
fi
