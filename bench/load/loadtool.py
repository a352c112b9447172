#!/usr/bin/env python3
"""Helpers for bench/load/run.sh (standard library only).

  loadtool.py ports N                      N free TCP ports on 127.0.0.1
  loadtool.py bodies TEST_CSV OUTDIR       request bodies: body-1.json, body-64.json,
                                           known.json (+ .mlserver variants), expected.json
  loadtool.py ready URL PID TIMEOUT        wait until GET URL answers 200 (fail if PID dies)
  loadtool.py check SERVER URL BODYDIR     predictions right? response sizes -> JSON line
  loadtool.py measure --server S --pid PID --url URL --body FILE --rows R
                      --connections C --duration D --warmup W --out JSONL
                                           one wrk scenario, with server CPU and RSS

Server CPU seconds: utime+stime (+cutime+cstime, i.e. reaped children) from
/proc/<pid>/stat, summed over the server process and all its descendants,
read just before and just after the measured wrk run. RSS: VmRSS summed over
the same process tree, sampled every 100 ms during the run (peak kept), and
the sum of each process's VmHWM (its own peak since start).
"""

import argparse
import csv
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- /proc ----

def _stat(pid):
    """(ppid, cpu_ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] = state (field 3), so field N is rest[N - 3].
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    return ppid, utime + stime + cutime + cstime


def tree(root):
    """The root pid and all its live descendants, with their cpu ticks."""
    parent, ticks = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            s = _stat(int(name))
            if s is not None:
                parent[int(name)], ticks[int(name)] = s
    if root not in parent:
        return {}
    children = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = ticks[pid]
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root):
    return sum(tree(root).values()) / CLK_TCK


def all_cpu_ticks():
    """{(pid, starttime): utime+stime+cutime+cstime} of every live process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("ascii", "replace")
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        out[(int(name), int(rest[19]))] = sum(int(v) for v in rest[11:15])
    return out


def cpu_growth(before, after, exclude):
    """CPU ticks used between two all_cpu_ticks() readings by processes other
    than the pids in `exclude`: growth of those alive at both (children they
    reaped meanwhile included) plus everything of those started meanwhile.
    Processes that exited unreaped by a live parent are missed (an undercount)."""
    total = 0
    for key, ticks in after.items():
        if key[0] in exclude:
            continue
        total += max(0, ticks - before.get(key, 0))
    return total


def _status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_context_switches(root):
    """Voluntary + involuntary context switches of every thread in the tree."""
    total = 0
    for pid in tree(root):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if "ctxt_switches:" in line:
                            total += int(line.split()[1])
            except OSError:
                pass
    return total


def tree_rss_kib(root):
    pids = tree(root)
    return (sum(_status_kib(p, "VmRSS") for p in pids),
            sum(_status_kib(p, "VmHWM") for p in pids),
            len(pids))


# ----------------------------------------------------------------- cmds ----

def cmd_ports(args):
    socks = []
    for _ in range(args.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def _body(rows, mlserver=False):
    data = [v for row in rows for v in row]
    body = {"inputs": [{"name": "X", "shape": [len(rows), 4], "datatype": "FP32",
                        "data": data}]}
    if mlserver:
        # MLServer's sklearn runtime returns only `predict` unless asked.
        body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
    # Numbers exactly as in the CSV (json.dumps of the float repr).
    return json.dumps(body, separators=(",", ":"))


def cmd_bodies(args):
    with open(args.test_csv, newline="") as f:
        rows = list(csv.reader(f))[1:]
    features = [[float(v) for v in r[:4]] for r in rows]
    labels = [r[4] for r in rows]
    sets = {
        "1": ([features[0]], [labels[0]]),
        "64": ([features[i % len(features)] for i in range(64)],
               [labels[i % len(labels)] for i in range(64)]),
        "known": ([[5.1, 3.5, 1.4, 0.2]], ["setosa"]),
    }
    os.makedirs(args.outdir, exist_ok=True)
    expected = {}
    for name, (x, y) in sets.items():
        for suffix, ml in (("", False), (".mlserver", True)):
            with open(os.path.join(args.outdir, f"body-{name}{suffix}.json"), "w") as f:
                f.write(_body(x, ml))
        expected[name] = y
    with open(os.path.join(args.outdir, "expected.json"), "w") as f:
        json.dump(expected, f)


def _get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status


def cmd_ready(args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{args.pid}"):
            sys.exit(f"server process {args.pid} exited before it was ready")
        try:
            if _get(args.url) == 200:
                return
        except (urllib.error.URLError, OSError, ConnectionError):
            pass
        time.sleep(0.25)
    sys.exit(f"{args.url} not ready after {args.timeout} s")


def _post(url, body, timeout=10.0):
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def _labels(response):
    """The label tensor of a V2 response: the first output holding strings."""
    for out in response.get("outputs", []):
        data = out.get("data") or []
        if data and all(isinstance(v, str) for v in data):
            return data
    raise ValueError(f"no string label output in {str(response)[:300]}")


def cmd_check(args):
    suffix = ".mlserver" if args.server == "mlserver" else ""
    with open(os.path.join(args.bodydir, "expected.json")) as f:
        expected = json.load(f)
    record = {"server": args.server, "response_bytes": {}, "request_bytes": {}}
    for name in ("known", "1", "64"):
        with open(os.path.join(args.bodydir, f"body-{name}{suffix}.json"), "rb") as f:
            body = f.read()
        status, raw = _post(args.url, body)
        if status != 200:
            sys.exit(f"{args.server}: HTTP {status} for body-{name}")
        labels = _labels(json.loads(raw))
        want = expected[name]
        if len(labels) != len(want):
            sys.exit(f"{args.server}: body-{name}: {len(labels)} labels for {len(want)} rows")
        agree = sum(a == b for a, b in zip(labels, want)) / len(want)
        record["request_bytes"][name] = len(body)
        record["response_bytes"][name] = len(raw)
        record[f"agreement_{name}"] = agree
        if args.canned:
            continue  # the limit handler answers a canned response: shape only
        if name == "known" and labels != want:
            sys.exit(f"{args.server}: [5.1,3.5,1.4,0.2] -> {labels}, expected {want}")
        if agree < 0.95:
            sys.exit(f"{args.server}: body-{name}: {agree:.2%} of labels agree with test.csv")
    print(json.dumps(record))
    what = ("canned response of the right shape (no inference)" if args.canned else
            f"predictions OK (known row -> setosa; 64-row body "
            f"{record['agreement_64']:.0%} agree with test.csv)")
    print(f"{args.server}: {what}; response bytes "
          f"{record['response_bytes']['1']} (1 row), {record['response_bytes']['64']} (64 rows)",
          file=sys.stderr)


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4, "h": 3.6e6}


def _wrk_percentile(text, pct):
    """The human --latency line, e.g. '     99%    1.23ms', in ms."""
    m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    return float(m.group(1)) * _WRK_UNITS[m.group(2)] if m else None


def _wrk(args, duration, latency):
    cmd = ["wrk", "-t1", f"-c{args.connections}", f"-d{duration}s", "--timeout", "5s",
           "-s", os.path.join(HERE, "post.lua")]
    if latency:
        cmd.append("--latency")
    cmd.append(args.url)
    env = dict(os.environ, LOAD_BODY=args.body)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_quiet(exclude_root, max_wait, threshold=0.1, window=2.0):
    """Wait (at most max_wait s) until other processes used under `threshold`
    of a core over `window` s. Returns (seconds waited, quiet reached)."""
    t0 = time.monotonic()
    while True:
        before = all_cpu_ticks()
        time.sleep(window)
        after = all_cpu_ticks()
        used = cpu_growth(before, after, set(tree(exclude_root)) | {os.getpid()}) / CLK_TCK
        waited = time.monotonic() - t0
        if used / window < threshold:
            return round(waited, 1), True
        if waited >= max_wait:
            print(f"  machine still busy after {waited:.0f} s ({used / window:.0%} of a core "
                  "used by other processes): measuring anyway", file=sys.stderr, flush=True)
            return round(waited, 1), False
        time.sleep(1.0)


def cmd_measure(args):
    quiet_wait, quiet = (0.0, None)
    if args.quiet_wait > 0:
        quiet_wait, quiet = wait_for_quiet(args.pid, args.quiet_wait)
    rss_start = tree_rss_kib(args.pid)[0]
    if args.warmup > 0:
        warm = _wrk(args, args.warmup, False)
        warm.communicate(timeout=args.warmup + 30)
    if not os.path.exists(f"/proc/{args.pid}"):
        sys.exit(f"server {args.pid} died during warm-up")
    # Settle, so the warm-up's last responses are not in the window.
    time.sleep(0.2)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    all0 = all_cpu_ticks()
    cpu0 = tree_cpu_seconds(args.pid)
    switches0 = tree_context_switches(args.pid)
    t0 = time.monotonic()
    proc = _wrk(args, args.duration, True)
    rss_peak = hwm = nprocs = 0
    deadline = t0 + args.duration + 30
    while proc.poll() is None:
        rss, hwm_now, n = tree_rss_kib(args.pid)
        rss_peak, hwm, nprocs = max(rss_peak, rss), max(hwm, hwm_now), max(nprocs, n)
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("wrk overran its time limit")
        time.sleep(0.1)
    out = proc.stdout.read()
    cpu1 = tree_cpu_seconds(args.pid)
    switches1 = tree_context_switches(args.pid)
    all1 = all_cpu_ticks()
    wall = time.monotonic() - t0
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    rss, hwm_now, n = tree_rss_kib(args.pid)
    rss_peak, hwm = max(rss_peak, rss), max(hwm, hwm_now)
    if proc.returncode != 0:
        sys.exit(f"wrk failed ({proc.returncode}):\n{out}")
    m = re.search(r"^WRKJSON (\{.*\})$", out, re.M)
    if not m:
        sys.exit(f"no WRKJSON line in wrk output:\n{out}")
    w = json.loads(m.group(1))
    seconds = w["duration_us"] / 1e6
    errors = sum(w[k] for k in ("errors_connect", "errors_read", "errors_write",
                                "errors_status", "errors_timeout"))
    ok = w["requests"] - w["errors_status"]
    cpu = cpu1 - cpu0
    client_cpu = ((after_children.ru_utime + after_children.ru_stime)
                  - (before_children.ru_utime + before_children.ru_stime))
    own_cpu = ((after_self.ru_utime + after_self.ru_stime)
               - (before_self.ru_utime + before_self.ru_stime))
    # Whatever else ran on the machine meanwhile (other jobs on a shared
    # machine): all processes' CPU time minus the server's and ours (this
    # process and its reaped wrk); never negative, may undercount.
    other = cpu_growth(all0, all1, set(tree(args.pid)) | {os.getpid()}) / CLK_TCK
    record = {
        "server": args.server,
        "scenario": f"c{args.connections}_r{args.rows}",
        "connections": args.connections,
        "rows": args.rows,
        "duration_s": round(seconds, 3),
        "requests": w["requests"],
        "errors": errors,
        "errors_detail": {k: w[k] for k in w if k.startswith("errors_")},
        "req_per_s": round(ok / seconds, 1),
        "rows_per_s": round(ok * args.rows / seconds, 1),
        "p50_ms": w["p50_us"] / 1000, "p90_ms": w["p90_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000, "p999_ms": w["p999_us"] / 1000,
        "mean_ms": round(w["latency_mean_us"] / 1000, 4),
        "max_ms": w["latency_max_us"] / 1000,
        "wrk_text_p50_ms": _wrk_percentile(out, 50),
        "wrk_text_p99_ms": _wrk_percentile(out, 99),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_util": round(cpu / wall, 3),
        "req_per_cpu_s": round(ok / cpu, 1) if cpu > 0 else None,
        "rows_per_cpu_s": round(ok * args.rows / cpu, 1) if cpu > 0 else None,
        "rss_peak_mib": round(rss_peak / 1024, 2),
        "hwm_sum_mib": round(hwm / 1024, 2),
        "rss_start_mib": round(rss_start / 1024, 2),
        "context_switches_per_request": round((switches1 - switches0) / w["requests"], 3)
        if w["requests"] else None,
        "server_processes": nprocs,
        "client_cpu_s": round(client_cpu, 3),
        "measure_cpu_s": round(own_cpu, 3),
        "other_processes_cpu_s": round(other, 2),
        "quiet_wait_s": quiet_wait, "quiet_at_start": quiet,
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"  {args.server:18s} c={args.connections:<2d} rows={args.rows:<2d} "
          f"{record['req_per_s']:>9.0f} req/s  p50 {record['p50_ms']:.3f} ms  "
          f"p99 {record['p99_ms']:.3f} ms  cpu {cpu:.2f} s ({record['server_cpu_util']:.0%})  "
          f"{record['req_per_cpu_s'] or 0:.0f} req/cpu-s  rss {record['rss_peak_mib']:.1f} MiB "
          f"(from {record['rss_start_mib']:.1f})  {record['context_switches_per_request']} cs/req  "
          f"wrk cpu {client_cpu:.2f} s  other processes {other:.2f} cpu-s"
          + (f"  ERRORS {errors}" if errors else ""), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ports"); s.add_argument("n", type=int); s.set_defaults(f=cmd_ports)
    s = sub.add_parser("bodies"); s.add_argument("test_csv"); s.add_argument("outdir")
    s.set_defaults(f=cmd_bodies)
    s = sub.add_parser("ready"); s.add_argument("url"); s.add_argument("pid", type=int)
    s.add_argument("timeout", type=float); s.set_defaults(f=cmd_ready)
    s = sub.add_parser("check"); s.add_argument("server"); s.add_argument("url")
    s.add_argument("bodydir")
    s.add_argument("--canned", action="store_true",
                   help="no inference behind it: check the response shape only")
    s.set_defaults(f=cmd_check)
    s = sub.add_parser("measure")
    for a in ("--server", "--url", "--body", "--out"):
        s.add_argument(a, required=True)
    for a in ("--pid", "--rows", "--connections"):
        s.add_argument(a, type=int, required=True)
    s.add_argument("--duration", type=int, default=8)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--quiet-wait", type=float, default=0,
                   help="first wait up to this many s for other processes to go idle")
    s.set_defaults(f=cmd_measure)
    args = p.parse_args()
    args.f(args)


if __name__ == "__main__":
    main()
