"""Turns bench/kafka/run.sh's measurements into results.json and the Kafka
table of bench/README.md.

Usage: report.py RESULTS.jsonl MESSAGES GIT_REV RESULTS_JSON README
"""
import datetime
import json
import re
import sys

import statistics

NAMES = {
    "modelops": "modelops (serve --no-rest, at least once)",
    "pass-through": "the same binary, pass-through (consume + produce, no scoring)",
    "python": "Python: confluent-kafka 2.16.1 + onnxruntime 1.31.1",
}


def main():
    lines, messages, rev, results_json, readme = sys.argv[1:6]
    runs = [json.loads(line) for line in open(lines)]
    for run in runs:
        seconds = max(run["last_ms"] - run["first_ms"], 1) / 1000
        run["messages_per_s"] = run["count"] / seconds
        run["messages_per_cpu_s"] = run["count"] / run["cpu_s"] if run["cpu_s"] > 0 else None
    by = {}
    for system in NAMES:
        mine = [r for r in runs if r["system"] == system]
        rates = [r["messages_per_s"] for r in mine]
        per_cpu = [r["messages_per_cpu_s"] for r in mine if r["messages_per_cpu_s"]]
        by[system] = {
            "runs": len(mine),
            "keys": min(r["keys"] for r in mine),
            "messages_per_s": statistics.median(rates),
            "rates": rates,
            "messages_per_cpu_s": statistics.median(per_cpu),
            "cpu_s": statistics.median(r["cpu_s"] for r in mine),
        }
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    json.dump({"when": stamp, "git": rev, "messages": int(messages), "runs": runs, "medians": by},
              open(results_json, "w"), indent=2)
    ours = by["modelops"]
    rows = []
    for system, run in by.items():
        spread = ", ".join(f"{r:,.0f}" for r in run["rates"])
        rows.append(
            f"| {NAMES[system]} | {run['runs']} | {run['keys']:,} | "
            f"{run['messages_per_s']:,.0f} ({spread}) | {run['cpu_s']:.2f} | "
            f"{run['messages_per_cpu_s']:,.0f} | "
            f"{ours['messages_per_s'] / run['messages_per_s']:.2f}× / "
            f"{ours['messages_per_cpu_s'] / run['messages_per_cpu_s']:.2f}× |"
        )
    through = by["pass-through"]
    python = by["python"]
    table = "\n".join([
        "<!-- kafka-table:start -->",
        "## Kafka: scoring throughput against pass-through and a Python consumer",
        "",
        f"`bench/kafka/run.sh` (what and how: the script's header), run {stamp} at git {rev}: "
        f"{int(messages):,} iris rows (one per message, keyed, 4 partitions) pre-filled into one "
        "input topic of a noida-db broker (CPU 1); each system reads it from the start with a "
        "consumer group of its own, pinned to CPU 0, and writes its own output topic. "
        "*msg/s* = results over the time from the first result's timestamp to the last's; "
        "*CPU-s* = the system's utime+stime while it ran. Medians over the rounds, each "
        "round's msg/s in brackets (their spread is the run's noise).",
        "",
        "| system | rounds | distinct keys (all results) | msg/s (rounds) | CPU-s | msg per CPU-s "
        "| modelops over this: msg/s / per CPU-s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"modelops reaches **{ours['messages_per_s'] / through['messages_per_s']:.0%}** of pass-through's "
        f"msg/s and **{ours['messages_per_cpu_s'] / through['messages_per_cpu_s']:.0%}** of its messages "
        f"per CPU-second (target ≥ 80%); against the Python consumer it does "
        f"**{ours['messages_per_s'] / python['messages_per_s']:.1f}×** the msg/s and "
        f"**{ours['messages_per_cpu_s'] / python['messages_per_cpu_s']:.1f}×** the messages per CPU-second "
        "(msg/s also depends on the broker, which shares the machine).",
        "<!-- kafka-table:end -->",
    ])
    text = open(readme).read()
    pattern = re.compile(r"<!-- kafka-table:start -->.*?<!-- kafka-table:end -->", re.S)
    text = pattern.sub(table, text) if pattern.search(text) else text.rstrip() + "\n\n" + table + "\n"
    open(readme, "w").write(text)
    print(table)


if __name__ == "__main__":
    main()
