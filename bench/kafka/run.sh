#!/usr/bin/env bash
# Kafka scoring throughput, side by side in one run on one broker:
#   modelops          serve --no-rest scoring iris (at least once)
#   pass-through      the same binary copying each message unscored (the baseline:
#                     consuming and producing alone)
#   python            confluent-kafka + onnxruntime (python_consumer.py), the obvious alternative
# in KAFKA_BENCH_ROUNDS (default 3) interleaved rounds; the table gives each
# system's median and the spread of its rounds shows the noise. Each run reads
# the same pre-filled 4-partition input topic (a consumer group of its own) and
# writes an output topic of its own, pinned to CPU 0; the broker runs on CPU 1.
# Before each run the script waits (up to 60 s) for the rest of the machine to
# be idle.
# Throughput = results / (last result's timestamp - first's); CPU = the
# scorer's utime+stime from /proc. Writes bench/kafka/results.json and the
# section between <!-- kafka-table:start --> and <!-- kafka-table:end --> of
# bench/README.md.
#
# Usage: bench/kafka/run.sh        (KAFKA_BENCH_MESSAGES, default 100000)
set -euo pipefail
cd "$(dirname "$0")/../.."
messages=${KAFKA_BENCH_MESSAGES:-100000}
rounds=${KAFKA_BENCH_ROUNDS:-3}
venv=${KAFKA_BENCH_VENV:-/var/cache/modelops/kafka-bench-venv}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/modelops/target}
if ! cmp -s bench/kafka/requirements.txt "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/kafka/requirements.txt
  cp bench/kafka/requirements.txt "$venv/requirements.txt"
fi
py="$venv/bin/python"
tool="$py bench/kafka/kafkatool.py"

cargo build --release -p serve
work=$(mktemp -d /tmp/kafka-bench.XXXXXX)
cp "$CARGO_TARGET_DIR/release/serve" "$work/serve"
scorer_pid=
cleanup() {
  [ -n "$scorer_pid" ] && kill "$scorer_pid" 2>/dev/null || true
  scripts/kafka-broker stop "$work/broker"
}
trap cleanup EXIT

brokers=$(taskset -c 1 scripts/kafka-broker start "$work/broker")
$tool create "$brokers" input 4
echo "filling the input topic with $messages messages"
$tool fill "$brokers" input "$messages" models/iris/test.csv

cpu_seconds() { awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }

runs=()
for round in $(seq "$rounds"); do
  runs+=("modelops $round" "pass-through $round" "python $round")
done
for run in "${runs[@]}"; do
  read -r system round <<<"$run"
  out="out-$system-$round"
  $tool create "$brokers" "$out" 4
  $tool quiet "$(cat "$work/broker/pid")" 60
  case $system in
    modelops | pass-through)
      extra=()
      [ "$system" = pass-through ] && extra=(--kafka-pass-through)
      taskset -c 0 "$work/serve" --no-rest --models models --kafka-brokers "$brokers" \
        --kafka-input-topic input --kafka-output-topic "$out" --kafka-dlq-topic "dlq-$system" \
        --kafka-group-id "group-$system-$round" --kafka-model iris "${extra[@]}" \
        2>"$work/$system-$round.log" &
      ;;
    python)
      taskset -c 0 "$py" bench/kafka/python_consumer.py "$brokers" input "$out" \
        "group-$system-$round" models/iris/1/model.onnx 2>"$work/$system-$round.log" &
      ;;
  esac
  scorer_pid=$!
  sleep 0.2
  before=$(cpu_seconds "$scorer_pid")
  $tool wait "$brokers" "$out" "$messages" 900
  after=$(cpu_seconds "$scorer_pid")
  kill -TERM "$scorer_pid"
  wait "$scorer_pid" || true
  scorer_pid=
  $tool span "$brokers" "$out" | "$py" -c '
import json, sys
span = json.load(sys.stdin)
span.update(system=sys.argv[1], round=int(sys.argv[2]), cpu_s=float(sys.argv[4]) - float(sys.argv[3]))
print(json.dumps(span))' "$system" "$round" "$before" "$after" >>"$work/results.jsonl"
  tail -1 "$work/results.jsonl"
done

python3 bench/kafka/report.py "$work/results.jsonl" "$messages" "$(git rev-parse --short HEAD)" \
  bench/kafka/results.json bench/README.md
