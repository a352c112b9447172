#!/usr/bin/env python3
"""Train the scikit-learn peers' model: LogisticRegression(max_iter=1000) on
models/iris/train.csv (the hyperparameters of models/train/train.py), saved
with joblib. Checks it on models/iris/test.csv and prints the accuracy.

Usage: train_sklearn.py TRAIN_CSV TEST_CSV OUT.joblib
"""

import csv
import os
import sys
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    X = np.asarray([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32)
    y = np.asarray([r[-1] for r in rows], dtype=object)
    return X, y


def main():
    train_csv, test_csv, out = sys.argv[1:4]
    X, y = read(train_csv)
    model = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    Xt, yt = read(test_csv)
    accuracy = float((model.predict(Xt) == yt).mean())
    if accuracy < 0.95:
        sys.exit(f"accuracy {accuracy:.4f} on {test_csv} is below 0.95")
    tmp = out + ".tmp"
    joblib.dump(model, tmp)
    os.replace(tmp, out)
    print(f"trained {out}: classes {list(model.classes_)}, test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
