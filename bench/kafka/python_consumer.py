"""The obvious Python alternative to `serve`'s Kafka scoring: a confluent-kafka
consumer that scores batches of messages with onnxruntime (one thread) and
produces one JSON result per message, at least once (offsets committed after
the results are flushed).

Usage: python_consumer.py BROKERS INPUT OUTPUT GROUP MODEL.onnx
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, Producer


def main():
    brokers, input_topic, output_topic, group, model_path = sys.argv[1:6]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    consumer.subscribe([input_topic])
    while True:
        messages = [m for m in consumer.consume(num_messages=500, timeout=0.5) if m.error() is None]
        if not messages:
            continue
        rows = np.array([json.loads(m.value()) for m in messages], dtype=np.float32)
        labels, probabilities = session.run(None, {input_name: rows})
        for message, label, probs in zip(messages, labels, probabilities):
            result = {
                "id": message.key().decode() if message.key() else None,
                "labels": [label if isinstance(label, str) else label.item()],
                "probabilities": [list(probs.values()) if isinstance(probs, dict) else probs.tolist()],
            }
            while True:
                try:
                    producer.produce(output_topic, json.dumps(result).encode(), key=message.key())
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        producer.flush()
        consumer.commit(asynchronous=False)


if __name__ == "__main__":
    main()
