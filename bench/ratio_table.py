#!/usr/bin/env python3
"""Merge criterion's estimates with onnxruntime's timings into the ratio table
of bench/README.md (between the zoo-table markers).

Usage: ratio_table.py CRITERION_DIR ORT_JSON README
Ratios are ours / onnxruntime's per-row time: below 1.0 means faster.
"""

import json
import sys
from pathlib import Path

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def median_ns(criterion: Path, group: str, name: str) -> float:
    estimates = json.loads((criterion / group / name / "new" / "estimates.json").read_text())
    return estimates["median"]["point_estimate"]


def main() -> None:
    criterion, ort_json, readme = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ort = json.loads(ort_json.read_text())
    rows, worst = [], {"batch 1": (0.0, ""), "batch 64": (0.0, ""), "load": (0.0, "")}
    for name in sorted(ort):
        ours_b1 = median_ns(criterion, "batch1", name) / 1e3
        ours_b64 = median_ns(criterion, "batch64", name) / 64 / 1e3
        ours_load = median_ns(criterion, "load", name) / 1e6
        theirs = ort[name]
        r1 = ours_b1 / theirs["batch1_us_per_row"]
        r64 = ours_b64 / theirs["batch64_us_per_row"]
        for key, value in (("batch 1", r1), ("batch 64", r64)):
            if value > worst[key][0]:
                worst[key] = (value, name)
        if ours_load > worst["load"][0]:
            worst["load"] = (ours_load, name)
        rows.append(
            f"| {name} | {ours_b1:.2f} | {theirs['batch1_us_per_row']:.2f} | **{r1:.2f}** "
            f"| {ours_b64:.3f} | {theirs['batch64_us_per_row']:.3f} | **{r64:.2f}** "
            f"| {ours_load:.1f} | {theirs['load_ms']:.1f} |"
        )
    table = "\n".join(
        [
            "| model | ours µs/row b1 | ort µs/row b1 | ratio b1 | ours µs/row b64 | ort µs/row b64 | ratio b64 | our load ms | ort load ms |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Worst ratio at batch 1: **{worst['batch 1'][0]:.2f}** ({worst['batch 1'][1]}); "
            f"at batch 64: **{worst['batch 64'][0]:.2f}** ({worst['batch 64'][1]}); "
            f"slowest load + optimize: **{worst['load'][0]:.1f} ms** ({worst['load'][1]}).",
        ]
    )
    text = readme.read_text() if readme.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = f"{head}{START}\n{table}\n{END}{tail}"
    else:
        text += f"\n{START}\n{table}\n{END}\n"
    readme.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
