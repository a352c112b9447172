#!/usr/bin/env python3
"""Train and export the bundled modelops models (and the serve test fixtures).

Deterministic: fixed seeds, single-threaded BLAS / onnxruntime, only datasets
that ship inside scikit-learn (nothing is downloaded). Re-running the script
with the pinned requirements.txt on the same machine rewrites every output
byte-for-byte.

Usage (from the repository root):
    python models/train/train.py              # models/ and serve/tests/fixtures/
    python models/train/train.py --models     # models/ only
    python models/train/train.py --fixtures   # serve/tests/fixtures/ only
"""

import os

# Pin every thread pool to one thread *before* numpy/scipy are imported, so
# BLAS reductions (MLP training) always run in the same order.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models"
FIXTURES_DIR = REPO / "serve" / "tests" / "fixtures"

# tract-onnx supports ai.onnx <= 17 and ai.onnx.ml <= 3.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
SEED = 0
TEST_SIZE = 0.3
FIXTURE_MAX_BYTES = 200 * 1024


# --------------------------------------------------------------------------
# formatting helpers (hand-rolled so the output bytes are fully under control)
# --------------------------------------------------------------------------

def fmt_feature(x) -> str:
    """Shortest decimal that round-trips the float32 value (positional)."""
    return np.format_float_positional(np.float32(x), unique=True, trim="-")


def fmt_prob(x) -> str:
    """Shortest round-trip float32 repr; valid JSON number (may use e-notation)."""
    s = str(np.float32(x))
    assert np.float32(s) == np.float32(x), (s, x)
    return s


def fmt_label(v) -> str:
    """A class label as a JSON / TOML value: quoted string or bare integer."""
    if isinstance(v, (str, np.str_)):
        v = str(v)
        assert re.fullmatch(r"[A-Za-z0-9_ .-]*", v), v  # nothing needing escapes
        return f'"{v}"'
    return str(int(v))


def sanitise(name: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    return re.sub(r"_+", "_", s)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


# --------------------------------------------------------------------------
# data / training / export
# --------------------------------------------------------------------------

def load(loader, scale=1.0, label_names=None):
    ds = loader()
    X = (np.asarray(ds.data, dtype=np.float64) / scale).astype(np.float32)
    y = np.asarray(ds.target)
    if label_names is not None:
        y = np.asarray(label_names, dtype=object)[y]
    features = [sanitise(n) for n in ds.feature_names]
    assert len(set(features)) == len(features), "feature names collide"
    assert "label" not in features
    return X, y, features


def split(X, y):
    return train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED, stratify=y)


def fit(model, X_train, y_train):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    return model


def export(model, n_features, zipmap=True) -> bytes:
    options = None if zipmap else {id(model): {"zipmap": False}}
    onx = to_onnx(model, np.zeros((1, n_features), dtype=np.float32),
                  target_opset=TARGET_OPSET, options=options)
    # skl2onnx collects opset imports in a set, so their order follows Python's
    # per-process string hash seed (and it can list a domain twice): store them
    # once per domain, sorted, so the bytes do not change from run to run.
    opsets = {}
    for imp in onx.opset_import:
        opsets[imp.domain] = max(opsets.get(imp.domain, 0), imp.version)
    del onx.opset_import[:]
    for domain in sorted(opsets):
        limit = TARGET_OPSET.get(domain)
        assert limit is not None and opsets[domain] <= limit, (domain, opsets[domain])
        onx.opset_import.add(domain=domain, version=opsets[domain])
    onnx.checker.check_model(onx, full_check=True)
    return onx.SerializeToString()


def run_onnx(model_bytes: bytes, X: np.ndarray, classes):
    """onnxruntime (1 thread) -> (labels, probabilities in `classes` order)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    labels, probs = sess.run(None, {sess.get_inputs()[0].name: X.astype(np.float32)})
    if isinstance(probs, list):  # ZipMap: one {class: prob} dict per row
        probs = np.array([[d[c] for c in classes] for d in probs], dtype=np.float32)
    else:
        probs = np.asarray(probs, dtype=np.float32)
    assert probs.shape == (X.shape[0], len(classes))
    return list(labels), probs


def csv_text(features, X, y) -> str:
    lines = [",".join(features + ["label"])]
    for row, label in zip(X, y):
        lab = str(label)
        assert "," not in lab and '"' not in lab
        lines.append(",".join(fmt_feature(v) for v in row) + "," + lab)
    return "\n".join(lines) + "\n"


def reference_json(classes, labels, probs) -> str:
    out = ["{"]
    out.append('  "classes": [' + ", ".join(fmt_label(c) for c in classes) + "],")
    out.append('  "labels": [' + ", ".join(fmt_label(v) for v in labels) + "],")
    out.append('  "probabilities": [')
    rows = ["    [" + ", ".join(fmt_prob(p) for p in r) + "]" for r in probs]
    out.append(",\n".join(rows))
    out.append("  ]")
    out.append("}")
    return "\n".join(out) + "\n"


def metrics(y_true, labels):
    y_true = np.asarray(y_true)
    labels = np.asarray(labels, dtype=y_true.dtype)
    return (float(accuracy_score(y_true, labels)),
            float(f1_score(y_true, labels, average="macro")))


def model_toml(name, description, classes, train_csv, test_csv, acc, f1) -> str:
    min_acc = math.floor(acc * 0.95 * 100) / 100
    assert min_acc < acc
    framework = f"scikit-learn {sklearn.__version__} / skl2onnx {skl2onnx.__version__}"
    return (
        f'description = "{description}"\n'
        f"labels = [{', '.join(fmt_label(c) for c in classes)}]"
        "   # class labels in probability-column order\n"
        "\n"
        "[acceptance]\n"
        f"min_accuracy = {min_acc:.2f}\n"
        "\n"
        "[lineage]\n"
        'training_script = "models/train/train.py"\n'
        f'training_data = "models/{name}/train.csv"\n'
        f'training_data_sha256 = "{sha256(train_csv)}"\n'
        f'test_data_sha256 = "{sha256(test_csv)}"\n'
        f'framework = "{framework}"\n'
        "\n"
        "[metrics]          # measured on the held-back test.csv with onnxruntime\n"
        f"accuracy = {acc:.4f}\n"
        f"macro_f1 = {f1:.4f}\n"
    )


# --------------------------------------------------------------------------
# bundled models
# --------------------------------------------------------------------------

MODELS = [
    dict(
        name="iris",
        description="Iris species from sepal/petal measurements (LogisticRegression)",
        data=lambda: load(load_iris, label_names=["setosa", "versicolor", "virginica"]),
        model=lambda: LogisticRegression(max_iter=1000),
    ),
    dict(
        name="wine",
        description="Wine cultivar (0, 1, 2) from 13 chemical measurements "
                    "(GradientBoostingClassifier)",
        data=lambda: load(load_wine),
        model=lambda: GradientBoostingClassifier(n_estimators=30, max_depth=3,
                                                 random_state=SEED),
    ),
    dict(
        name="digits",
        description="Handwritten digit (0-9) from 8x8 grey levels scaled to [0, 1] "
                    "(MLPClassifier)",
        data=lambda: load(load_digits, scale=16.0),
        model=lambda: MLPClassifier(hidden_layer_sizes=(32,), max_iter=500,
                                    random_state=SEED),
    ),
]


def build_model(spec):
    name = spec["name"]
    out = MODELS_DIR / name
    X, y, features = spec["data"]()
    X_train, X_test, y_train, y_test = split(X, y)
    model = fit(spec["model"](), X_train, y_train)
    classes = list(model.classes_)
    onx = export(model, X.shape[1])
    labels, probs = run_onnx(onx, X_test, classes)
    acc, f1 = metrics(y_test, labels)

    write(out / "1" / "model.onnx", onx)
    write(out / "train.csv", csv_text(features, X_train, y_train))
    write(out / "test.csv", csv_text(features, X_test, y_test))
    write(out / "reference.json", reference_json(classes, labels, probs))
    write(out / "model.toml", model_toml(name, spec["description"], classes,
                                         out / "train.csv", out / "test.csv", acc, f1))
    print(f"{name}: {len(y_train)} train / {len(y_test)} test rows, "
          f"accuracy {acc:.4f}, macro_f1 {f1:.4f}")


# --------------------------------------------------------------------------
# serve test fixtures
# --------------------------------------------------------------------------

def build_fixtures():
    # iris with integer labels 0,1,2 (same split as models/iris: the string
    # labels sort in the same order, so stratification picks the same rows).
    X, y, _ = load(load_iris)
    X_train, _, y_train, _ = split(X, y)
    lr = fit(LogisticRegression(max_iter=1000), X_train, y_train)
    write(FIXTURES_DIR / "iris_nozipmap.onnx", export(lr, X.shape[1], zipmap=False))
    write(FIXTURES_DIR / "iris_int_zipmap.onnx", export(lr, X.shape[1]))

    # binary random forest on breast_cancer (0 = malignant, 1 = benign).
    X, y, features = load(load_breast_cancer)
    X_train, X_test, y_train, y_test = split(X, y)
    rf = fit(RandomForestClassifier(n_estimators=5, max_depth=4, random_state=SEED),
             X_train, y_train)
    classes = list(rf.classes_)
    onx = export(rf, X.shape[1])
    labels, probs = run_onnx(onx, X_test, classes)
    acc, _ = metrics(y_test, labels)
    write(FIXTURES_DIR / "binary_rf.onnx", onx)
    write(FIXTURES_DIR / "binary_rf.test.csv", csv_text(features, X_test, y_test))
    write(FIXTURES_DIR / "binary_rf.reference.json", reference_json(classes, labels, probs))
    print(f"fixtures: binary_rf accuracy {acc:.4f}")

    for name in ("iris_nozipmap.onnx", "iris_int_zipmap.onnx", "binary_rf.onnx",
                 "binary_rf.test.csv", "binary_rf.reference.json"):
        size = (FIXTURES_DIR / name).stat().st_size
        assert size < FIXTURE_MAX_BYTES, f"fixture {name} too big: {size} bytes"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", action="store_true", help="only write models/")
    ap.add_argument("--fixtures", action="store_true",
                    help="only write serve/tests/fixtures/")
    args = ap.parse_args()
    both = args.models == args.fixtures
    np.random.seed(SEED)
    if both or args.models:
        for spec in MODELS:
            build_model(spec)
    if both or args.fixtures:
        build_fixtures()


if __name__ == "__main__":
    main()
