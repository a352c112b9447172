"""Peer 6: KServe's Python ModelServer with a small custom kserve.Model.

Serves the same joblib LogisticRegression as the Flask and MLServer peers
over the Open Inference Protocol V2 REST endpoint (/v2/models/iris/infer):
`predict` for the labels, `predict_proba` for the probabilities. One uvicorn
worker, gRPC off, the per-request latency log line off.

Environment: LOAD_SKLEARN_MODEL (the .joblib file).
Run: python kserve_sklearn.py --http_port P --workers 1 --enable_grpc false
     --enable_latency_logging false
"""

import os
from typing import Dict, Optional

import joblib
import numpy as np
import kserve
from kserve import InferOutput, InferRequest, InferResponse
from kserve.utils.utils import generate_uuid


class IrisModel(kserve.Model):
    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.model = None
        self.load()

    def load(self) -> bool:
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers: Optional[Dict[str, str]] = None
                ) -> InferResponse:
        x = payload.inputs[0].as_numpy()
        labels = self.model.predict(x)
        probabilities = self.model.predict_proba(x).astype(np.float32)
        return InferResponse(
            response_id=payload.id or generate_uuid(),
            model_name=self.name,
            model_version="1",
            infer_outputs=[
                InferOutput(name="label", shape=[len(labels)], datatype="BYTES",
                            data=labels.tolist()),
                InferOutput(name="probabilities", shape=list(probabilities.shape),
                            datatype="FP32", data=probabilities.ravel().tolist()),
            ],
        )


if __name__ == "__main__":
    model = IrisModel("iris", os.environ["LOAD_SKLEARN_MODEL"])
    kserve.ModelServer().start([model])
