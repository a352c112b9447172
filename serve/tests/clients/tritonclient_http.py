"""Drive a running modelops server with Triton's own HTTP client, unmodified:
JSON tensors, binary tensors (the client's default) and classification.

Usage: python tritonclient_http.py HOST:PORT
Prints one JSON document with what the client saw; exits non-zero (with the
client's exception) if the client cannot use the server.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


def main(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready("iris"), "iris not ready"
    assert client.is_model_ready("iris", "1"), "iris v1 not ready"
    server = client.get_server_metadata()
    metadata = client.get_model_metadata("iris")
    input_meta = metadata["inputs"][0]

    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4], [5.9, 3.0, 4.2, 1.5]], dtype=np.float32)
    tensor = httpclient.InferInput(input_meta["name"], list(rows.shape), input_meta["datatype"])
    tensor.set_data_from_numpy(rows, binary_data=False)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="triton-1", model_version="1")
    response = result.get_response()
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in result.as_numpy("label").tolist()]
    probabilities = result.as_numpy("probabilities")

    # The client's defaults: binary tensors both ways.
    binary_input = httpclient.InferInput(input_meta["name"], list(rows.shape), input_meta["datatype"])
    binary_input.set_data_from_numpy(rows)
    binary = client.infer("iris", [binary_input], outputs=[
        httpclient.InferRequestedOutput("label"),
        httpclient.InferRequestedOutput("probabilities"),
    ])
    binary_labels = [x.decode() for x in binary.as_numpy("label").tolist()]
    binary_probabilities = binary.as_numpy("probabilities")
    no_outputs = client.infer("iris", [binary_input])  # no outputs named: all of them

    # The classification extension: the top 2 classes per row.
    top = client.infer("iris", [binary_input], outputs=[
        httpclient.InferRequestedOutput("probabilities", class_count=2),
    ])
    top_classes = [[x.decode() for x in row] for row in top.as_numpy("probabilities").tolist()]

    # A mistake surfaces as the client's exception carrying the server's message.
    bad = httpclient.InferInput(input_meta["name"], [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32), binary_data=False)
    try:
        client.infer("iris", [bad])
        error = None
    except InferenceServerException as e:
        error = e.message()

    print(json.dumps({
        "server_name": server["name"],
        "input": input_meta,
        "id": response.get("id"),
        "labels": labels,
        "probabilities_shape": list(probabilities.shape),
        "probabilities_dtype": str(probabilities.dtype),
        "probabilities": probabilities.tolist(),
        "error": error,
        "binary_labels": binary_labels,
        "binary_probabilities": binary_probabilities.tolist(),
        "no_outputs_named": sorted(o["name"] for o in no_outputs.get_response()["outputs"]),
        "top_classes": top_classes,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
