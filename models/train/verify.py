#!/usr/bin/env python3
"""Check the bundled models and fixtures against their reference outputs.

For every models/<name>/ (and the binary_rf fixture): parse test.csv, run
model.onnx with onnxruntime (1 thread) and require labels and float32
probabilities to equal reference.json exactly; check the sha256 sums and the
accuracy recorded in model.toml. Prints the graph interface of each model.

Usage (from the repository root):  python models/train/verify.py
"""

import csv
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
FIXTURES_DIR = REPO / "serve" / "tests" / "fixtures"


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def read_csv(path, int_labels):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header[-1] == "label"
    assert all(re.fullmatch(r"[a-z0-9_]+", h) for h in header), header
    X = np.array([[np.float32(v) for v in r[:-1]] for r in body], dtype=np.float32)
    y = [int(r[-1]) if int_labels else r[-1] for r in body]
    return X, y


def run(sess, X, classes):
    labels, probs = sess.run(None, {sess.get_inputs()[0].name: X})
    if isinstance(probs, list):
        probs = [[d[c] for c in classes] for d in probs]
    labels = [x.item() if hasattr(x, "item") else x for x in labels]
    return labels, np.asarray(probs, dtype=np.float32)


def describe(path):
    m = onnx.load(str(path))
    sess = session(path)
    inp = sess.get_inputs()[0]
    print(f"  input: {inp.name} {inp.type} {inp.shape}")
    print("  outputs: " + ", ".join(f"{o.name}: {o.type}" for o in sess.get_outputs()))
    print("  opsets: " + ", ".join(f"{i.domain or 'ai.onnx'}={i.version}"
                                   for i in m.opset_import))
    ops = sorted({(n.domain or "ai.onnx", n.op_type) for n in m.graph.node})
    print("  ops: " + ", ".join(f"{d}:{t}" for d, t in ops))
    print(f"  size: {path.stat().st_size} bytes")
    return sess


def check(name, onnx_path, test_csv, ref_path, toml_path=None):
    print(name)
    sess = describe(onnx_path)
    ref = json.loads(ref_path.read_text())
    classes = ref["classes"]
    X, y = read_csv(test_csv, isinstance(classes[0], int))
    labels, probs = run(sess, X, classes)
    ref_probs = np.asarray(ref["probabilities"], dtype=np.float32)
    ok = labels == ref["labels"] and probs.shape == ref_probs.shape \
        and np.array_equal(probs, ref_probs)
    acc = float(np.mean([a == b for a, b in zip(labels, y)]))
    print(f"  rows: {len(y)}  accuracy: {acc:.4f}  reference match: {ok}")
    if toml_path is not None:
        meta = tomllib.loads(toml_path.read_text())
        lin = meta["lineage"]
        train_csv = REPO / lin["training_data"]
        ok &= hashlib.sha256(train_csv.read_bytes()).hexdigest() == lin["training_data_sha256"]
        ok &= hashlib.sha256(test_csv.read_bytes()).hexdigest() == lin["test_data_sha256"]
        ok &= meta["labels"] == classes
        ok &= round(acc, 4) == meta["metrics"]["accuracy"]
        ok &= acc >= meta["acceptance"]["min_accuracy"]
        print(f"  model.toml consistent: {ok}")
    return ok


def main():
    ok = True
    for d in sorted(p for p in MODELS_DIR.iterdir() if (p / "model.toml").exists()):
        ok &= check(d.name, d / "1" / "model.onnx", d / "test.csv",
                    d / "reference.json", d / "model.toml")
    ok &= check("fixture binary_rf", FIXTURES_DIR / "binary_rf.onnx",
                FIXTURES_DIR / "binary_rf.test.csv", FIXTURES_DIR / "binary_rf.reference.json")

    # The two integer-label iris fixtures must agree with each other.
    X, y = read_csv(MODELS_DIR / "iris" / "test.csv", int_labels=False)
    names = ["setosa", "versicolor", "virginica"]
    y = [names.index(v) for v in y]
    for f in ("iris_int_zipmap.onnx", "iris_nozipmap.onnx"):
        print(f"fixture {f}")
        describe(FIXTURES_DIR / f)
    l1, p1 = run(session(FIXTURES_DIR / "iris_int_zipmap.onnx"), X, [0, 1, 2])
    l2, p2 = run(session(FIXTURES_DIR / "iris_nozipmap.onnx"), X, [0, 1, 2])
    same = l1 == l2 and np.array_equal(p1, p2)
    acc = float(np.mean([a == b for a, b in zip(l1, y)]))
    print(f"  iris int fixtures agree: {same}  accuracy on models/iris/test.csv: {acc:.4f}")
    ok &= same
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
