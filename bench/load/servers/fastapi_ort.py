"""Peer 3: FastAPI + onnxruntime under uvicorn, Open Inference Protocol V2 JSON.

The same ONNX file modelops serves (models/iris/1/model.onnx, a skl2onnx
export with ZipMap), one onnxruntime session with one thread. Typed request
parsing with pydantic (FastAPI's idiomatic path), a response_model so FastAPI
serialises through pydantic-core. The handler is `async def`: the model call
is a few microseconds of CPU, so it runs on the event loop instead of hopping
to the thread pool (the faster choice on one core).

Environment: LOAD_ONNX_MODEL (model.onnx), LOAD_MODEL_TOML (its model.toml,
for the class-label order).
Run: uvicorn fastapi_ort:app --workers 1 --no-access-log
"""

import os
import tomllib
from typing import List, Optional, Union

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

with open(os.environ["LOAD_MODEL_TOML"], "rb") as f:
    LABELS = tomllib.load(f)["labels"]

_options = ort.SessionOptions()
_options.intra_op_num_threads = 1
_options.inter_op_num_threads = 1
SESSION = ort.InferenceSession(
    os.environ["LOAD_ONNX_MODEL"], _options, providers=["CPUExecutionProvider"]
)
INPUT_NAME = SESSION.get_inputs()[0].name


class InputTensor(BaseModel):
    name: str
    shape: List[int]
    datatype: str
    data: List[float]


class InferRequest(BaseModel):
    id: Optional[str] = None
    inputs: List[InputTensor]


class OutputTensor(BaseModel):
    name: str
    datatype: str
    shape: List[int]
    data: Union[List[str], List[float]]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: Optional[str] = None
    outputs: List[OutputTensor]


app = FastAPI()


@app.get("/v2/health/ready")
async def ready():
    return {"ready": True}


@app.get("/v2/health/live")
async def live():
    return {"live": True}


@app.post("/v2/models/{model_name}/infer", response_model=InferResponse,
          response_model_exclude_none=True)
async def infer(model_name: str, request: InferRequest):
    if model_name != "iris":
        raise HTTPException(status_code=404, detail=f"unknown model {model_name}")
    if len(request.inputs) != 1:
        raise HTTPException(status_code=400, detail="expected one input tensor")
    tensor = request.inputs[0]
    try:
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    except ValueError as e:
        raise HTTPException(status_code=400, detail=str(e))
    labels, probabilities = SESSION.run(None, {INPUT_NAME: x})
    rows = x.shape[0]
    # ZipMap output: one {label: probability} dict per row.
    flat = [p[label] for p in probabilities for label in LABELS]
    return InferResponse(
        model_name=model_name,
        model_version="1",
        id=request.id,
        outputs=[
            OutputTensor(name="label", datatype="BYTES", shape=[rows], data=labels.tolist()),
            OutputTensor(name="probabilities", datatype="FP32",
                         shape=[rows, len(LABELS)], data=flat),
        ],
    )
