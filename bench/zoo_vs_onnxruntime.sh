#!/usr/bin/env bash
# Side by side, in one run: our native scoring (criterion, bench/benches/models.rs)
# and onnxruntime (Python, one thread, bench/ort/time_onnxruntime.py) on the
# bundled models and every model of models/zoo, each pinned to the same core,
# model by model (ours, then onnxruntime's right after).
# Writes the ratio table into bench/README.md and prints the worst ratios.
#
# Usage: bench/zoo_vs_onnxruntime.sh [CPU]    (CPU to pin to, default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=${1:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/modelops/target}
venv=${MODELOPS_ORT_VENV:-/var/cache/modelops/ort-venv}
if ! cmp -s bench/ort/requirements.txt "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/ort/requirements.txt
  cp bench/ort/requirements.txt "$venv/requirements.txt"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cargo bench -p bench --bench models --no-run
rm -rf "$CARGO_TARGET_DIR/criterion/load" "$CARGO_TARGET_DIR/criterion/batch1" "$CARGO_TARGET_DIR/criterion/batch64"
# Model by model, ours then onnxruntime's right after on the same core, so
# both of a model's figures see the same machine: this machine's speed
# drifts by tens of percent over the minutes a whole pass takes.
models=$( (ls -d models/zoo/*/ | xargs -n1 basename; echo iris wine digits) | tr " " "\n" | sort)
for model in $models; do
  echo "== $model"
  taskset -c "$cpu" cargo bench -q -p bench --bench models -- --noplot "^(load|batch1|batch64)/$model\$" \
    >>"$out/criterion.log"
  taskset -c "$cpu" "$venv/bin/python" bench/ort/time_onnxruntime.py --bundled --only "$model" \
    >"$out/ort-$model.json"
done
python3 -c 'import json, sys; print(json.dumps({k: v for f in sys.argv[1:] for k, v in json.load(open(f)).items()}))' \
  "$out"/ort-*.json >"$out/ort.json"
python3 bench/ratio_table.py "$CARGO_TARGET_DIR/criterion" "$out/ort.json" bench/README.md
