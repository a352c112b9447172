"""Peer 4: Flask + scikit-learn under gunicorn (one sync worker), V2-shaped JSON.

The original design: a LogisticRegression(max_iter=1000) trained on
models/iris/train.csv (bench/load/train_sklearn.py), saved with joblib,
loaded here; `predict` for the labels and `predict_proba` for the
probabilities, answered in the Open Inference Protocol V2 JSON shape.

Environment: LOAD_SKLEARN_MODEL (the .joblib file).
Run: gunicorn -w 1 -k sync flask_sklearn:app
"""

import os

import joblib
import numpy as np
from flask import Flask, jsonify, request

MODEL = joblib.load(os.environ["LOAD_SKLEARN_MODEL"])

app = Flask(__name__)


@app.get("/v2/health/ready")
def ready():
    return jsonify(ready=True)


@app.get("/v2/health/live")
def live():
    return jsonify(live=True)


@app.post("/v2/models/<model_name>/infer")
def infer(model_name):
    if model_name != "iris":
        return jsonify(error=f"unknown model {model_name}"), 404
    body = request.get_json()
    try:
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    except (KeyError, IndexError, TypeError, ValueError) as e:
        return jsonify(error=f"invalid request: {e}"), 400
    labels = MODEL.predict(x)
    probabilities = MODEL.predict_proba(x).astype(np.float32)
    response = {
        "model_name": model_name,
        "model_version": "1",
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [len(labels)],
             "data": labels.tolist()},
            {"name": "probabilities", "datatype": "FP32",
             "shape": list(probabilities.shape),
             "data": probabilities.ravel().tolist()},
        ],
    }
    if body.get("id") is not None:
        response["id"] = body["id"]
    return jsonify(response)
