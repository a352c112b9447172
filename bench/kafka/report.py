"""Turns bench/kafka/run.sh's measurements into results.json and the Kafka
table of bench/README.md.

Usage: report.py RESULTS.jsonl MESSAGES GIT_REV RESULTS_JSON README
"""
import datetime
import json
import re
import sys

NAMES = {
    "modelops": "modelops (serve --no-rest, at least once)",
    "pass-through": "the same binary, pass-through (consume + produce, no scoring)",
    "python": "Python: confluent-kafka 2.16.1 + onnxruntime 1.31.1",
    "modelops-aa": "modelops again (A/A control)",
}


def main():
    lines, messages, rev, results_json, readme = sys.argv[1:6]
    runs = [json.loads(line) for line in open(lines)]
    for run in runs:
        seconds = max(run["last_ms"] - run["first_ms"], 1) / 1000
        run["messages_per_s"] = run["count"] / seconds
        run["messages_per_cpu_s"] = run["count"] / run["cpu_s"] if run["cpu_s"] > 0 else None
    by = {r["system"]: r for r in runs}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    json.dump({"when": stamp, "git": rev, "messages": int(messages), "runs": runs},
              open(results_json, "w"), indent=2)
    ours = by["modelops"]
    rows = []
    for run in runs:
        rows.append(
            f"| {NAMES[run['system']]} | {run['count']:,} | {run['keys']:,} | "
            f"{run['messages_per_s']:,.0f} | {run['cpu_s']:.2f} | {run['messages_per_cpu_s']:,.0f} | "
            f"{ours['messages_per_s'] / run['messages_per_s']:.2f}× |"
        )
    table = "\n".join([
        "<!-- kafka-table:start -->",
        "## Kafka: scoring throughput against pass-through and a Python consumer",
        "",
        f"`bench/kafka/run.sh` (what and how: the script's header), run {stamp} at git {rev}: "
        f"{int(messages):,} iris rows (one per message, keyed, 4 partitions) pre-filled into one "
        "input topic of a noida-db broker (CPU 1); each system reads it from the start with a "
        "consumer group of its own, pinned to CPU 0, and writes its own output topic. "
        "*msg/s* = results over the time from the first result's timestamp to the last's; "
        "*CPU-s* = the system's utime+stime while it ran.",
        "",
        "| system | results | distinct keys | msg/s | CPU-s | msg per CPU-s | modelops msg/s over this |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"modelops reaches **{ours['messages_per_s'] / by['pass-through']['messages_per_s']:.0%}** of "
        f"pass-through (target ≥ 80%) and **{ours['messages_per_s'] / by['python']['messages_per_s']:.1f}×** "
        "the Python consumer's rate; the A/A row shows the run's noise.",
        "<!-- kafka-table:end -->",
    ])
    text = open(readme).read()
    pattern = re.compile(r"<!-- kafka-table:start -->.*?<!-- kafka-table:end -->", re.S)
    text = pattern.sub(table, text) if pattern.search(text) else text.rstrip() + "\n\n" + table + "\n"
    open(readme, "w").write(text)
    print(table)


if __name__ == "__main__":
    main()
