#!/usr/bin/env bash
# Side by side, in one run: our native scoring (criterion, bench/benches/models.rs)
# and onnxruntime (Python, one thread, bench/ort/time_onnxruntime.py) on the
# bundled models and every model of models/zoo, each pinned to the same core.
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
echo "== modelops (criterion), pinned to CPU $cpu"
rm -rf "$CARGO_TARGET_DIR/criterion/load" "$CARGO_TARGET_DIR/criterion/batch1" "$CARGO_TARGET_DIR/criterion/batch64"
taskset -c "$cpu" cargo bench -p bench --bench models -- --noplot >"$out/criterion.log"
echo "== onnxruntime, pinned to CPU $cpu"
taskset -c "$cpu" "$venv/bin/python" bench/ort/time_onnxruntime.py --bundled >"$out/ort.json"
python3 bench/ratio_table.py "$CARGO_TARGET_DIR/criterion" "$out/ort.json" bench/README.md
