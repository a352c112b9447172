#!/usr/bin/env python3
"""Turn one bench/load/run.sh run into bench/load/results.json, the Markdown
section between <!-- load-table:start --> and <!-- load-table:end --> of
bench/README.md, and the plot bench/load/load.png.

Usage: report.py RUN_DIR [--readme bench/README.md] [--json ...] [--png ...]
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
START, END = "<!-- load-table:start -->", "<!-- load-table:end -->"
LIMIT = "limit"
OURS = "modelops"
ORDER = ["limit", "modelops", "modelops-default", "modelops-aa",
         "fastapi", "flask", "mlserver", "kserve"]
NOISY = 0.5  # other processes' CPU-s in a scenario above which it is flagged
SCENARIOS = [("c1_r1", 1, 1), ("c1_r64", 1, 64), ("c32_r1", 32, 1), ("c32_r64", 32, 64)]


def requirement_versions():
    versions = {}
    for name in ("fastapi", "flask", "mlserver", "kserve", "report"):
        path = os.path.join(HERE, f"requirements-{name}.txt")
        pins = {}
        if os.path.exists(path):
            for line in open(path):
                m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
                if m:
                    pins[m.group(1).lower().replace("_", "-")] = m.group(2)
        versions[name] = pins
    return versions


def labels(versions):
    v = lambda venv, pkg: versions.get(venv, {}).get(pkg, "?")  # noqa: E731
    return {
        "limit": "limit: actix-web, parse only, no inference",
        "modelops": "modelops `--workers 1`",
        "modelops-default": "modelops, default workers",
        "modelops-aa": "modelops again (A/A control)",
        "fastapi": f"FastAPI {v('fastapi', 'fastapi')} + onnxruntime {v('fastapi', 'onnxruntime')}"
                   f" (uvicorn {v('fastapi', 'uvicorn')})",
        "flask": f"Flask {v('flask', 'flask')} + scikit-learn {v('flask', 'scikit-learn')}"
                 f" (gunicorn {v('flask', 'gunicorn')}, sync)",
        "mlserver": f"MLServer {v('mlserver', 'mlserver')} sklearn runtime",
        "kserve": f"KServe {v('kserve', 'kserve')} ModelServer + sklearn",
    }


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def fmt(x, digits=0):
    if x is None:
        return "–"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def per_cpu(r):
    return r["req_per_cpu_s"]


def analyse(results):
    """results[(server, scenario)] -> record, plus the derived ratios."""
    by = {(r["server"], r["scenario"]): r for r in results}
    for (server, scenario), r in by.items():
        limit = by.get((LIMIT, scenario))
        r["ratio_to_limit"] = (per_cpu(r) / per_cpu(limit)
                               if limit and per_cpu(limit) and per_cpu(r) else None)
    return by


def headline(by):
    def get(server, scenario):
        return by.get((server, scenario))

    checks = []
    m, l = get(OURS, "c32_r1"), get(LIMIT, "c32_r1")
    if m and l:
        ratio = m["ratio_to_limit"]
        checks.append({"check": "1 row, 32 connections: modelops requests per CPU-s ≥ 50% of the limit's",
                       "value": pct(ratio), "pass": ratio is not None and ratio >= 0.5})
    m, l = get(OURS, "c32_r64"), get(LIMIT, "c32_r64")
    if m and l:
        ratio = m["ratio_to_limit"]
        checks.append({"check": "64 rows, 32 connections: modelops rows per CPU-s ≥ 50% of the limit's",
                       "value": pct(ratio), "pass": ratio is not None and ratio >= 0.5})
    for scenario, rows in (("c32_r1", 1), ("c32_r64", 64)):
        m = get(OURS, scenario)
        if m:
            checks.append({"check": f"p99 ≤ 2 ms at 32 connections, {rows} row{'s' if rows > 1 else ''}: modelops",
                           "value": f"{m['p99_ms']:.3f} ms", "pass": m["p99_ms"] <= 2.0})
    rss = [r["rss_peak_mib"] for (s, _), r in by.items() if s == OURS]
    if rss:
        checks.append({"check": "modelops peak RSS < 64 MiB (sum over its process tree, all scenarios)",
                       "value": f"{max(rss):.1f} MiB", "pass": max(rss) < 64})
    ours = [by[(OURS, sc)] for sc, _, _ in SCENARIOS if (OURS, sc) in by]
    if ours and ours[0].get("rss_start_mib") is not None:
        n = sum(r["requests"] for r in ours)
        checks.append({"check": "modelops RSS growth across its four scenarios "
                                "(before the first → peak of the last)",
                       "value": f"{ours[0]['rss_start_mib']:.1f} → {ours[-1]['rss_peak_mib']:.1f} MiB"
                                f" over {n / 1e6:.2f} M measured requests (+ warm-ups)",
                       "pass": None})
    return checks


def ratios_to_peers(by, servers):
    """modelops per-CPU-s (and req/s, p99) relative to each other server."""
    out = {}
    for peer in servers:
        if peer == OURS:
            continue
        row = {}
        for scenario, _, _ in SCENARIOS:
            m, p = by.get((OURS, scenario)), by.get((peer, scenario))
            if m and p and per_cpu(p) and per_cpu(m):
                row[scenario] = {
                    "per_cpu_s": round(per_cpu(m) / per_cpu(p), 3),
                    "req_per_s": round(m["req_per_s"] / p["req_per_s"], 3) if p["req_per_s"] else None,
                    "p99": round(p["p99_ms"] / m["p99_ms"], 3) if m["p99_ms"] else None,
                }
        out[peer] = row
    return out


def scenario_title(connections, rows):
    return (f"{connections} connection{'s' if connections > 1 else ''}, "
            f"{rows} row{'s' if rows > 1 else ''} per request")


def markdown(meta, by, servers, names, checks, peer_ratios, failures, checks_io, timing, versions):
    lines = []
    add = lines.append
    add("## HTTP load: modelops against the limit and the Python servers")
    add("")
    add("`bench/load/run.sh` (how and what: [bench/load/README.md](load/README.md)); "
        "figures in `bench/load/results.json`, plot `bench/load/load.png`. "
        f"Run {meta.get('started', '?')} at git {meta.get('git_rev', '?')}"
        + (f" (+{meta['git_dirty_files_serve']} uncommitted files under serve/)"
           if meta.get("git_dirty_files_serve") else "")
        + f", {meta.get('cpu_model', '?')}, {meta.get('cores', '?')} cores; each server pinned "
        f"to CPU {meta.get('server_cpu', 0)}, wrk (1 thread) to CPU {meta.get('client_cpu', 1)}; "
        f"{meta.get('duration_s', '?')} s measured per scenario after {meta.get('warmup_s', '?')} s "
        f"of warm-up; whole run {timing.get('total_seconds', '?')} s. All servers serve iris "
        "(4 FP32 features, 3 string classes) over Open Inference Protocol V2 JSON and answer "
        "labels + probabilities.")
    add("")
    add("*Per CPU-s* = requests (or rows) served per second of server CPU time "
        "(utime+stime of the server's whole process tree), the figure that does not depend on "
        "how busy the shared machine was; *vs limit* = that figure over the limit handler's "
        "(no inference: HTTP + typed JSON parsing + a canned response of the same shape). "
        "RSS is the peak of the process tree's summed VmRSS during the scenario (servers are "
        "started once and run the scenarios in table order, so it includes growth from the earlier "
        "ones; `rss_start_mib` in results.json has the figure before each). *ctx switches / req*: "
        "voluntary + involuntary context switches of all the server's threads per request. "
        "*Other jobs CPU-s*: CPU time every other process on the machine used during the "
        f"scenario (the machine is shared); above {NOISY} s the row may be disturbed.")
    add("")
    add("### Headline checks")
    add("")
    add("| check | measured | |")
    add("| --- | ---: | --- |")
    for c in checks:
        verdict = "info" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        add(f"| {c['check']} | {c['value']} | {verdict} |")
    # A/A and default-workers comparisons.
    for other, what in (("modelops-aa", "A/A control (modelops run twice)"),
                        ("modelops-default", "default workers vs `--workers 1`")):
        diffs = []
        for scenario, _, _ in SCENARIOS:
            a, b = by.get((OURS, scenario)), by.get((other, scenario))
            if a and b and per_cpu(a) and per_cpu(b):
                diffs.append(f"{scenario} {100 * (per_cpu(b) / per_cpu(a) - 1):+.1f}%")
        if diffs:
            add(f"| {what}: per-CPU-s difference | {', '.join(diffs)} | info |")
    gated = [r for r in by.values() if r.get("quiet_at_start") is not None]
    if gated:
        quiet = sum(1 for r in gated if r["quiet_at_start"])
        add("")
        add(f"Before each scenario the run waited for the rest of the machine to go idle "
            f"(other processes < 10% of a core over 2 s): {quiet} of {len(gated)} scenarios "
            f"started quiet, after waits of up to {max(r['quiet_wait_s'] for r in gated):.0f} s.")
    noisy = [f"{s} {sc} ({r['other_processes_cpu_s']:.1f} s)" for (s, sc), r in sorted(by.items())
             if (r.get("other_processes_cpu_s") or 0) > NOISY]
    if noisy:
        add("")
        add(f"Other jobs used more than {NOISY} CPU-s during: " + ", ".join(noisy) + ".")
    add("")
    if peer_ratios:
        add("### modelops relative to each server")
        add("")
        add("modelops' figure over the other's: per CPU-s (× more work per CPU second), "
            "and in brackets req/s × and p99 × (other's p99 / ours; above 1 means ours is lower).")
        add("")
        add("| server | " + " | ".join(scenario_title(c, r) for _, c, r in SCENARIOS) + " |")
        add("| --- |" + " ---: |" * len(SCENARIOS))
        for peer in servers:
            if peer not in peer_ratios:
                continue
            cells = []
            for scenario, _, _ in SCENARIOS:
                x = peer_ratios[peer].get(scenario)
                cells.append("–" if not x else
                             f"**{x['per_cpu_s']:.2f}×** ({x['req_per_s']:.2f}×, {x['p99']:.2f}×)")
            add(f"| {names.get(peer, peer)} | " + " | ".join(cells) + " |")
        add("")
    for scenario, connections, rows in SCENARIOS:
        present = [s for s in servers if (s, scenario) in by]
        if not present:
            continue
        add(f"### {scenario_title(connections, rows)}")
        add("")
        unit = "req" if rows == 1 else "rows"
        add(f"| server | req/s | rows/s | p50 ms | p99 ms | server CPU-s (util) | "
            f"{unit} per CPU-s | vs limit | RSS MiB | ctx switches / req | other jobs CPU-s |")
        add("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in present:
            r = by[(s, scenario)]
            figure = r["req_per_cpu_s"] if rows == 1 else r["rows_per_cpu_s"]
            err = f" ⚠ {r['errors']} errors" if r["errors"] else ""
            add(f"| {names.get(s, s)}{err} | {fmt(r['req_per_s'])} | {fmt(r['rows_per_s'])} | "
                f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
                f"{r['server_cpu_s']:.2f} ({100 * r['server_cpu_util']:.0f}%) | {fmt(figure)} | "
                f"{pct(r['ratio_to_limit'])} | {r['rss_peak_mib']:.1f} | "
                f"{fmt(r.get('context_switches_per_request'), 2)} | "
                f"{fmt(r.get('other_processes_cpu_s'), 2)} |")
        add("")
    sizes = {c["server"]: c["response_bytes"] for c in checks_io}
    if sizes:
        add("Response bytes (1 row / 64 rows): " + "; ".join(
            f"{s} {sizes[s]['1']} / {sizes[s]['64']}" for s in servers if s in sizes) + ".")
        add("")
    if failures:
        add("**Not measured:** " + "; ".join(f"{f['server']}: {f['error']}" for f in failures))
        add("")
    return "\n".join(lines).rstrip() + "\n"


def write_readme(path, section):
    with open(path) as f:
        text = f.read()
    block = f"{START}\n{section}{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text + ("" if text.endswith("\n") else "\n") + "\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def plot(path, by, servers, names):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [s for s in servers if s != LIMIT]
    scen = [s for s in SCENARIOS if any((x, s[0]) in by for x in others)]
    fig, ax = plt.subplots(figsize=(12, 5.5))
    width = 0.8 / max(1, len(others))
    colors = plt.get_cmap("tab10")
    for i, server in enumerate(others):
        xs, ys = [], []
        for j, (scenario, _, _) in enumerate(scen):
            r = by.get((server, scenario))
            if r and r.get("ratio_to_limit"):
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(r["ratio_to_limit"])
        bars = ax.bar(xs, ys, width * 0.92, label=names.get(server, server).replace("`", ""),
                      color=colors(i))
        for b, y in zip(bars, ys):
            ax.annotate(f"{100 * y:.0f}%" if y >= 0.095 else f"{100 * y:.1f}%",
                        (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom",
                        fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    ax.axhline(1.0, color="black", lw=1)
    ax.axhline(0.5, color="grey", lw=1, ls="--")
    ax.text(len(scen) - 0.5, 1.0, "limit ", va="bottom", ha="right", fontsize=8)
    ax.text(len(scen) - 0.5, 0.5, "50% of the limit ", va="bottom", ha="right", fontsize=8,
            color="grey")
    ax.set_yscale("log")
    ax.set_ylim(0.005, 2.5)
    ax.set_yticks([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0])
    ax.set_yticklabels(["1%", "2%", "5%", "10%", "20%", "50%", "100%", "200%"])
    ax.set_xticks(range(len(scen)))
    ax.set_xticklabels([f"{c} connection{'s' if c > 1 else ''}\n{r} row{'s' if r > 1 else ''}"
                        " per request" for _, c, r in scen])
    ax.set_xlim(-0.5, len(scen) - 0.5)
    ax.set_ylabel("requests per server CPU-second,\nrelative to the limit handler")
    ax.set_title("iris over V2 JSON, server pinned to one core: work done per CPU-second vs "
                 "the no-inference limit")
    ax.grid(axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--readme", default=os.path.join(REPO, "bench", "README.md"))
    p.add_argument("--json", default=os.path.join(HERE, "results.json"))
    p.add_argument("--png", default=os.path.join(HERE, "load.png"))
    args = p.parse_args()
    run = args.run_dir
    meta = read_json(os.path.join(run, "meta.json"), {})
    timing = read_json(os.path.join(run, "timing.json"), {})
    results = read_jsonl(os.path.join(run, "results.jsonl"))
    failures = read_jsonl(os.path.join(run, "failures.jsonl"))
    checks_io = read_jsonl(os.path.join(run, "checks.jsonl"))
    commands = read_jsonl(os.path.join(run, "servers.jsonl"))
    threadpool = read_json(os.path.join(run, "threadpool.json"), None)
    if not results:
        sys.exit(f"no results in {run}")
    versions = requirement_versions()
    names = labels(versions)
    by = analyse(results)
    seen = {r["server"] for r in results}
    servers = [s for s in ORDER if s in seen] + sorted(seen - set(ORDER))
    checks = headline(by)
    peer_ratios = ratios_to_peers(by, servers)
    out = {
        "meta": meta, "timing": timing, "versions": versions, "threadpool": threadpool,
        "servers": {s: {"label": names.get(s, s),
                        "command": next((c["command"] for c in commands if c["server"] == s), None),
                        "check": next((c for c in checks_io if c["server"] == s), None)}
                    for s in servers},
        "results": [by[(s, sc)] for s in servers for sc, _, _ in SCENARIOS if (s, sc) in by],
        "headline": checks,
        "modelops_relative_to": peer_ratios,
        "failures": failures,
    }
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    section = markdown(meta, by, servers, names, checks, peer_ratios, failures, checks_io,
                       timing, versions)
    write_readme(args.readme, section)
    plot(args.png, by, servers, names)
    print(section)
    print(f"wrote {args.json}, {args.png} and the section of {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
