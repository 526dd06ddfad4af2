"""Which of the module's functions an allowed call runs, and how much machine code each touches.

    python bench/footprint.py                        # what `make bench-footprint` runs
    python bench/footprint.py --wasm variant.wasm --label "unroll off" --out /tmp/fp.md

On this machine the filter's CPU per request follows the code it touches,
cold, more than the instructions it runs (bench/README.md, "Instructions
are not the cost: cold code"). Envoy under callgrind can count the
module's cache misses but not name its functions (V8 generates the code;
Envoy offers no way to set V8's code log). So this runs the module under
node's V8 instead, with the optimising compiler only (`--no-liftoff`, as
proxy-wasm-cpp-host sets it), driven by a small proxy-wasm host
(`wasm-probes/proxy_host.mjs`: the callbacks and host answers of an
allowed 1 KiB call, as in Envoy), under `valgrind --tool=callgrind
--dump-instr=yes`, and maps every executed address to its function with
V8's `--log-code` records.

Counted: machine instructions run at least once per request on average,
grouped by the 64-byte cache line they sit in. A second run with no
requests (start and policy load only) is subtracted, instruction by
instruction (function and offset: V8 places code differently per process),
so loading the policy does not count. A line is a unit of
instruction-cache traffic, so "lines" is the module's code footprint per
request. The host's clock is fixed, so the instruction count repeats
exactly from run to run and the line count within ~5 (code alignment); it
does not depend on the machine's load, and is meant to compare module
variants side by side. It is node's V8, not Envoy's: absolute numbers differ, the
ranking of functions holds (checked against Envoy's `--cache-sim` counts,
bench/README.md). Writes bench/results/footprint.md.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import concurrent.futures
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

HOST = h.BENCH / "wasm-probes" / "proxy_host.mjs"
NAMED_TARGET = h.REPO / "target" / "footprint"
LINE = 64


def build_named() -> Path:
    """The release module with its function names kept (same code as dist/, `strip` off)."""
    env = dict(os.environ, CARGO_PROFILE_RELEASE_STRIP="false", CARGO_TARGET_DIR=str(NAMED_TARGET))
    subprocess.run(["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "--lib"],
                   cwd=h.REPO, env=env, check=True)  # fmt: skip
    return NAMED_TARGET / "wasm32-wasip1" / "release" / "mcp_policy.wasm"


def run(wasm: Path, policy: Path, requests: int, mode: str, work: Path) -> tuple[Path, Path, dict]:
    """Runs the host under callgrind; returns the callgrind dump, V8's code log and the host's report."""
    work.mkdir(parents=True, exist_ok=True)
    dump, log = work / "callgrind.out", work / "v8.log"
    cmd = [
        "valgrind", "--tool=callgrind", "--dump-instr=yes", f"--callgrind-out-file={dump}",
        "node", "--no-liftoff", "--no-wasm-lazy-compilation", "--log-code", f"--logfile={log}",
        "--no-logfile-per-isolate", str(HOST), str(wasm), str(policy), str(requests), mode,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    report = {}
    for line in out.stdout.splitlines():
        if line.startswith("HOST_CALLS "):
            report["host_calls"] = json.loads(line.split(" ", 1)[1])
        elif line.startswith("FORWARDED "):
            report["forwarded"] = line.split(" ", 1)[1]
    if out.returncode != 0:
        sys.exit(f"footprint: the host run failed ({report.get('forwarded', 'no report')}):\n{out.stderr[-2000:]}")
    return dump, log, report


def code_ranges(log: Path) -> list[tuple[int, int, str]]:
    """(start, size, name) of every Wasm function V8 compiled, from its code log."""
    ranges = []
    for line in log.read_text(errors="replace").splitlines():
        # code-creation,JS,<kind>,<time>,<address>,<size>,<name>,...: Wasm
        # functions are kind 4 in node 20's V8 (the numbering may change).
        if line.startswith("code-creation,JS,4,"):
            parts = line.split(",")
            ranges.append((int(parts[4], 16), int(parts[5]), parts[6]))
    if not ranges:
        sys.exit(f"footprint: no Wasm functions in V8's code log {log} (has its format changed?)")
    return sorted(ranges)


def instruction_costs(dump: Path) -> collections.Counter:
    """Executions per instruction address (callgrind `--dump-instr=yes`, positions `instr line`)."""
    costs: collections.Counter = collections.Counter()
    addr = 0
    after_call = False
    with dump.open(errors="replace") as f:
        for line in f:
            if line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost
                continue
            if not line or line[0] not in "+-*0":
                continue
            fields = line.split()
            pos = fields[0]
            if pos.startswith("0x"):
                addr = int(pos, 16)
            elif pos[0] in "+-":
                step = int(pos[1:], 16) if pos[1:].startswith("0x") else int(pos[1:])
                addr += step if pos[0] == "+" else -step
            elif pos != "*":
                continue
            if after_call:
                after_call = False
                continue
            if len(fields) > 2:
                costs[addr] += int(fields[2])
    return costs


def demangle(names: list[str]) -> list[str]:
    """Readable Rust names (c++filt when present; hashes and crate ids dropped)."""
    if shutil.which("c++filt"):
        out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
        if len(out) == len(names):
            names = out
    table = {"$LT$": "<", "$GT$": ">", "$u20$": " ", "$C$": ",", "$RF$": "&", "$BP$": "*", "$LP$": "(", "$RP$": ")",
             "$u7b$": "{", "$u7d$": "}", "..": "::"}  # fmt: skip
    readable = []
    for n in names:
        n = re.sub(r"::h[0-9a-f]{16}$", "", n)
        n = re.sub(r"\[[0-9a-f]{16}\]", "", n)
        for k, v in table.items():
            n = n.replace(k, v)
        readable.append(n)
    return readable


def module_costs(dump: Path, log: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """Executions of each instruction in the module's code, keyed by (function, offset): (address, count)."""
    ranges = code_ranges(log)
    starts = [r[0] for r in ranges]
    out = {}
    for addr, count in instruction_costs(dump).items():
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= ranges[i][0] + ranges[i][1]:
            continue
        start, _, name = ranges[i]
        out[(name, addr - start)] = (addr, count)
    if not out:
        sys.exit(f"footprint: no executed module code in {dump}")
    return out


def footprint(run_n: dict, run_0: dict, requests: int) -> tuple[list[tuple[str, int, float]], int, float]:
    """Per function: (name, cache lines run on every request, instructions per request); totals.

    `run_n`, `run_0`: `module_costs` of a run with `requests` requests and of one with none.
    """
    lines: dict[str, set] = collections.defaultdict(set)
    instr: collections.Counter = collections.Counter()
    for (name, offset), (addr, count) in run_n.items():
        per_requests = count - run_0.get((name, offset), (0, 0))[1]
        if per_requests < requests:
            continue
        lines[name].add(addr // LINE)
        instr[name] += per_requests
    names = sorted(lines, key=lambda n: (-len(lines[n]), n))
    shown = demangle(names)
    rows = [(shown[k], len(lines[n]), instr[n] / requests) for k, n in enumerate(names)]
    every = set().union(*lines.values()) if lines else set()
    return rows, len(every), sum(instr.values()) / requests


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, help="module to measure (default: this tree's, built with names)")
    ap.add_argument("--policy", type=Path, default=h.POLICY_PATH)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--mode", choices=("hold", "stream"), default="hold")
    ap.add_argument("--top", type=int, default=40, help="functions listed")
    ap.add_argument("--label", default="", help="a note for the results header (e.g. the commit)")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "footprint.md")
    args = ap.parse_args()
    for tool in ("valgrind", "node"):
        if not shutil.which(tool):
            sys.exit(f"footprint: needs {tool}")
    wasm = args.wasm or build_named()
    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp:
        # The two runs side by side (two cores): with requests, and start + policy load only.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            loaded = pool.submit(run, wasm, args.policy, 0, args.mode, Path(tmp) / "load")
            served = pool.submit(run, wasm, args.policy, args.requests, args.mode, Path(tmp) / "serve")
            dump, log, report = served.result()
            dump_0, log_0, _ = loaded.result()
        rows, total_lines, total_instr = footprint(
            module_costs(dump, log), module_costs(dump_0, log_0), args.requests
        )
    node_v8 = subprocess.run(["node", "-p", "process.versions.v8"], capture_output=True, text=True).stdout.strip()
    calls = ", ".join(f"`{k.removeprefix('proxy_')}` {v:g}" for k, v in sorted(report.get("host_calls", {}).items()))
    out = [
        "# Module code footprint per request (node's V8, callgrind)",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}{' - ' + args.label if args.label else ''}",
        f"- module: {wasm.name}, {wasm.stat().st_size:,} bytes; policy {args.policy.name}; header mode {args.mode}",
        f"- node's V8 {node_v8}, `--no-liftoff`; {args.requests} allowed 1 KiB calls through `wasm-probes/proxy_host.mjs`"
        f" ({report.get('forwarded', '?')} forwarded)",
        f"- host calls per request (the first request creates the two rate-limit keys): {calls}",
        "",
        f"**{total_lines:,} cache lines of module code ({total_lines * LINE / 1024:.1f} KiB) run on every request,"
        f" {total_instr:,.0f} machine instructions per request.**",
        "",
        "| function | lines | KiB | instr/req |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, n, per_req in rows[: args.top]:
        out.append(f"| `{name[:110]}` | {n} | {n * LINE / 1024:.1f} | {per_req:,.0f} |")
    rest = rows[args.top :]
    if rest:
        out.append(f"| {len(rest)} more functions | {sum(r[1] for r in rest)} | {sum(r[1] for r in rest) * LINE / 1024:.1f}"
                   f" | {sum(r[2] for r in rest):,.0f} |")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")
    print("\n".join(out[:9]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
