"""Helpers for bench/kafka/run.sh: create topics, fill the input topic, wait
for an output topic to reach a count, and measure how long its results took.

  kafkatool.py create BROKERS TOPIC PARTITIONS
  kafkatool.py fill BROKERS TOPIC COUNT TEST_CSV      keyed 0..COUNT-1, one row each
  kafkatool.py wait BROKERS TOPIC COUNT TIMEOUT_S     until COUNT messages (exit 1 on timeout)
  kafkatool.py span BROKERS TOPIC                     JSON: count, distinct keys, first/last timestamps
  kafkatool.py quiet BROKER_PID MAX_WAIT_S            until the rest of the machine is idle
"""
import csv
import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create(brokers, topic, partitions):
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, int(partitions), 1)]).values():
        future.result()


def fill(brokers, topic, count, test_csv):
    with open(test_csv) as f:
        rows = [[float(x) for x in r[:-1]] for r in list(csv.reader(f))[1:]]
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "enable.idempotence": True})
    for i in range(int(count)):
        value = json.dumps(rows[i % len(rows)]).encode()
        while True:
            try:
                producer.produce(topic, value, key=str(i).encode(), headers=[("model", b"iris")])
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()


def total(consumer, topic):
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions
    return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)


def wait(brokers, topic, count, timeout):
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "kafkatool-" + uuid.uuid4().hex})
    deadline = time.time() + float(timeout)
    while time.time() < deadline:
        if total(consumer, topic) >= int(count):
            return
        time.sleep(0.05)
    sys.exit(f"{topic}: {total(consumer, topic)} of {count} after {timeout} s")


def span(brokers, topic):
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "kafkatool-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    expected = total(consumer, topic)
    consumer.subscribe([topic])
    seen, keys, first, last = 0, set(), None, None
    while seen < expected:
        for m in consumer.consume(num_messages=1000, timeout=1):
            if m.error():
                continue
            seen += 1
            keys.add(m.key())
            stamp = m.timestamp()[1]
            first = stamp if first is None else min(first, stamp)
            last = stamp if last is None else max(last, stamp)
    print(json.dumps({"count": seen, "keys": len(keys), "first_ms": first, "last_ms": last}))


def quiet(broker_pid, max_wait):
    # The load benchmark's idle check, with the broker's CPU not counted.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "load"))
    from loadtool import wait_for_quiet

    wait_for_quiet(int(broker_pid), float(max_wait))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"create": create, "fill": fill, "wait": wait, "span": span, "quiet": quiet}[command](*args)
