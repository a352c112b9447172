#!/usr/bin/env python3
"""Time onnxruntime (CPU, one thread, sequential) on the model zoo.

For every model under models/zoo/ (both the ZipMap and the _nozipmap variant)
and, with --bundled, the bundled models/iris, models/wine and models/digits:

  load_ms             InferenceSession creation from the .onnx file (median of
                      --repeats creations)
  batch1_us_per_row   one row per run(), cycling through the test.csv rows
  batch64_us_per_row  64 rows per run() (the test rows tiled to 64), divided by 64

Each latency is measured as: warm-up, then a calibrated number of run() calls
that takes at least --min-seconds (default 0.3 s), timed with
time.perf_counter_ns; this is repeated --repeats (default 5) times and the
median is reported. run() fetches every output, so a ZipMap model's time
includes building its Python dicts, as a Python client would see it.

Prints JSON to stdout: {model: {"batch1_us_per_row": .., "batch64_us_per_row": ..,
"load_ms": ..}}; progress and package versions go to stderr.

Usage (from the repository root, e.g. in the zoo venv, see requirements.txt):
    python bench/ort/time_onnxruntime.py                    # the zoo
    python bench/ort/time_onnxruntime.py --bundled          # zoo + models/{iris,wine,digits}
    python bench/ort/time_onnxruntime.py --only knn mlp_nozipmap --min-seconds 0.1
"""

import os

# One thread in every pool (numpy's BLAS included) before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUNDLED = ("iris", "wine", "digits")
BATCH = 64


def session_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only
    return so


def new_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), session_options(),
                                providers=["CPUExecutionProvider"])


def read_rows(test_csv: Path) -> np.ndarray:
    """The feature columns of test.csv (everything but the last, `label`)."""
    with test_csv.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        assert header[-1] == "label", f"{test_csv}: last column is not `label`"
        rows = [[float(v) for v in r[:-1]] for r in reader]
    assert rows, f"{test_csv}: no rows"
    return np.asarray(rows, dtype=np.float32)


def discover(zoo: Path, bundled: bool):
    """-> [(name, model.onnx, test.csv)] in name order."""
    found = {}
    if zoo is not None:
        for d in sorted(p for p in zoo.iterdir() if p.is_dir()):
            onnx_path, test_csv = d / "1" / "model.onnx", d / "test.csv"
            if onnx_path.is_file() and test_csv.is_file():
                found[d.name] = (onnx_path, test_csv)
    if bundled:
        for name in BUNDLED:
            d = REPO / "models" / name
            assert name not in found, f"bundled {name} clashes with a zoo model"
            found[name] = (d / "1" / "model.onnx", d / "test.csv")
    return [(name, *found[name]) for name in sorted(found)]


def time_calls(call, n: int) -> int:
    """Nanoseconds for n calls of call(i), i = 0..n-1."""
    start = time.perf_counter_ns()
    for i in range(n):
        call(i)
    return time.perf_counter_ns() - start


def measure(call, min_seconds: float, repeats: int) -> float:
    """Median nanoseconds per call over `repeats` timed loops of >= min_seconds."""
    # warm-up: at least 20 calls and 0.05 s (allocations, arena, caches)
    n, elapsed = 20, 0
    while True:
        elapsed = time_calls(call, n)
        if elapsed >= 50e6:
            break
        n *= 2
    # calibrate the loop length so that one timed loop takes >= min_seconds
    per_call = elapsed / n
    n = max(1, math.ceil(min_seconds * 1e9 / per_call * 1.1))
    samples = []
    while len(samples) < repeats:
        t = time_calls(call, n)
        if t < min_seconds * 1e9:  # got faster than calibrated: lengthen, retry
            n = math.ceil(n * min_seconds * 1e9 / t * 1.1)
            continue
        samples.append(t / n)
    return statistics.median(samples)


def bench_model(onnx_path: Path, test_csv: Path, min_seconds: float, repeats: int):
    X = read_rows(test_csv)
    loads = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        sess = new_session(onnx_path)
        loads.append(time.perf_counter_ns() - start)
    inputs = sess.get_inputs()
    assert len(inputs) == 1, [i.name for i in inputs]
    name = inputs[0].name

    singles = [np.ascontiguousarray(X[i:i + 1]) for i in range(len(X))]
    n_rows = len(singles)
    batch = np.ascontiguousarray(np.resize(X, (BATCH, X.shape[1])))  # tiles rows
    run = sess.run

    b1 = measure(lambda i: run(None, {name: singles[i % n_rows]}), min_seconds, repeats)
    b64 = measure(lambda i: run(None, {name: batch}), min_seconds, repeats)
    return {
        "batch1_us_per_row": round(b1 / 1e3, 3),
        "batch64_us_per_row": round(b64 / BATCH / 1e3, 3),
        "load_ms": round(statistics.median(loads) / 1e6, 3),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", type=Path, default=REPO / "models" / "zoo",
                    help="model zoo directory (default: models/zoo)")
    ap.add_argument("--no-zoo", action="store_true", help="skip the zoo")
    ap.add_argument("--bundled", action="store_true",
                    help="also time models/iris, models/wine, models/digits")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these models")
    ap.add_argument("--min-seconds", type=float, default=0.3,
                    help="minimum duration of one timed loop (default 0.3)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="timed loops per measurement; the median is reported (default 5)")
    args = ap.parse_args()

    models = discover(None if args.no_zoo else args.zoo, args.bundled)
    if args.only:
        unknown = sorted(set(args.only) - {m[0] for m in models})
        if unknown:
            ap.error(f"unknown model(s): {unknown}")
        models = [m for m in models if m[0] in args.only]
    if not models:
        ap.error("no models found")

    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {platform.machine()}; "
          f"{len(models)} models, >= {args.min_seconds} s x {args.repeats} per measurement",
          file=sys.stderr)
    results = {}
    t0 = time.perf_counter()
    for name, onnx_path, test_csv in models:
        results[name] = bench_model(onnx_path, test_csv, args.min_seconds, args.repeats)
        r = results[name]
        print(f"{name:40s} batch1 {r['batch1_us_per_row']:10.3f} us/row   "
              f"batch64 {r['batch64_us_per_row']:9.3f} us/row   "
              f"load {r['load_ms']:8.3f} ms", file=sys.stderr)
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
