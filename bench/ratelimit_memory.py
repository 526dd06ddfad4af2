"""Memory stays bounded with 100k distinct sessions.

Starts Envoy + the filter with a policy whose tool has a `session`-scoped
limit, sends 100 000 allowed calls each with a fresh `Mcp-Session-Id` (wrk,
many keep-alive connections, a Lua script inventing the ids) and samples
Envoy's RSS (VmRSS from /proc/<pid>/status) at 0, 10k, 25k, 50k, 75k and
100k calls. A control Envoy then gets the same number of calls in one single
session: growth that both show is Envoy's own (connections, allocator,
stats), growth only the distinct-session run shows would be per-session
state.

Design being checked: counters use fixed shared-data keys
(`counter_slots`, default 256 per counter, each value 1,820 bytes), so the
filter's memory cannot grow with the number of sessions.

    python bench/ratelimit_memory.py [--calls 100000] [--no-control]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

POLICY = {
    "version": "1",
    "description": "ratelimit_memory benchmark: one session-scoped counter",
    "default": "deny",
    "tools": {
        # max is high so the shared overflow budget (used once all 8 entries
        # of a slot are live) never refuses: every call is allowed, and what
        # is measured is memory, not refusals.
        "search_docs": {
            "limits": [{"counter": "per_session", "window": "minute", "max": 1000000, "scope": "session"}]
        }
    },
}

SESSIONS_LUA = h.BENCH / "wrk" / "sessions.lua"
ALLOWED = "wasmcustom.mcp_policy.calls.allowed"
LIMITED = "wasmcustom.mcp_policy.calls.rate_limited"


def run(label: str, same_session: bool, args, upstream: h.Envoy, work: Path, body_file: Path) -> list[tuple[int, int, float]]:
    envoy = h.Envoy(
        label,
        h.proxy_config("wasm", upstream_port=upstream.port, wasm_path=args.wasm.resolve(), policy=json.dumps(POLICY)),
        work / label,
        concurrency=args.concurrency,
    ).start()
    rows: list[tuple[int, int, float]] = []  # (calls, rss KiB, seconds)
    try:
        time.sleep(0.3)
        rows.append((0, envoy.rss_kib(), 0.0))
        print(f"  {label}: {0:>7} calls  RSS {rows[-1][1] / 1024:7.1f} MiB", flush=True)
        t0 = time.monotonic()
        done = 0
        for target in checkpoints(args.calls):
            per_thread = max(1, (target - done) // args.threads)
            progress = Progress(envoy)
            r = h.run_wrk(
                envoy.url, body_file, 600, threads=args.threads, connections=args.connections,
                script=SESSIONS_LUA,
                env={"BENCH_PER_THREAD": str(per_thread), "BENCH_PREFIX": f"{label}{target}",
                     "BENCH_SAME_SESSION": "1" if same_session else "0"},
                until=lambda: progress.reached(target),
            )  # fmt: skip
            stats = envoy.stats("wasmcustom.mcp_policy.calls.")
            done = stats.get(ALLOWED, 0)
            if stats.get(LIMITED, 0) or r.non_2xx or r.socket_errors:
                print(f"    warning: {stats.get(LIMITED, 0)} rate limited, {r.non_2xx} non-2xx, {r.socket_errors} socket errors")
            rows.append((done, envoy.rss_kib(), time.monotonic() - t0))
            print(f"  {label}: {done:>7} calls  RSS {rows[-1][1] / 1024:7.1f} MiB  ({r.rps:.0f} req/s)", flush=True)
        crashes = h_crashes(envoy)
        if crashes:
            print(f"    VM crash in log: {crashes}")
    finally:
        envoy.stop()
    return rows


class Progress:
    """Tells when the filter has counted `target` calls, or stopped counting
    (the wrk threads met their quota)."""

    def __init__(self, envoy: h.Envoy) -> None:
        self.envoy = envoy
        self.last = -1
        self.still_since = time.monotonic()
        self.next_poll = 0.0

    def reached(self, target: int) -> bool:
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.next_poll = now + 0.2
        try:
            count = self.envoy.stats(ALLOWED).get(ALLOWED, 0)
        except OSError:
            return False
        if count != self.last:
            self.last, self.still_since = count, now
        return count >= target or now - self.still_since > 1.0


def h_crashes(envoy: h.Envoy) -> str:
    for line in envoy.log_tail(400).splitlines():
        if "panic" in line or "Uncaught RuntimeError" in line:
            return line[:200]
    return ""


def checkpoints(total: int) -> list[int]:
    points = [10_000, 25_000, 50_000, 75_000, 100_000]
    scaled = sorted({max(1, p * total // 100_000) for p in points})
    return scaled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=2, help="Envoy workers (shared data is process-wide)")
    ap.add_argument("--no-control", action="store_true", help="skip the single-session control run")
    ap.add_argument("--wasm", type=Path, default=h.REPO / "dist" / "mcp_policy.wasm")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "ratelimit_memory.md")
    args = ap.parse_args(argv)
    if not args.wasm.exists():
        print(f"no module at {args.wasm}: run `make build`", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcp-policy-memory-"))
    body_file = work / "body.json"
    body_file.write_bytes(h.body(1024))
    print(f"ratelimit memory: {args.calls} calls, fresh Mcp-Session-Id each, Envoy --concurrency {args.concurrency}, "
          f"wrk {args.threads} threads x {args.connections} connections", flush=True)  # fmt: skip
    upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream").start()
    try:
        distinct = run("distinct", False, args, upstream, work, body_file)
        control = None if args.no_control else run("control", True, args, upstream, work, body_file)
    finally:
        upstream.stop()

    lines = [
        "# Rate-limit memory with distinct sessions",
        "",
        f"- Envoy {h.envoy_version()}, `--concurrency {args.concurrency}`, module {args.wasm.stat().st_size:,} bytes",
        f"- machine: {h.machine()['cpu']}, {h.machine()['cores']} cores",
        "- policy: one tool with a `session`-scoped counter (`counter_slots` default 256); "
        "every call carries a new `Mcp-Session-Id`; 1 KiB `tools/call` bodies; all calls allowed",
        "- calls = the filter's own `mcp_policy.calls.allowed` counter at the sample; RSS = VmRSS of the Envoy process",
        "",
        "| calls (distinct sessions) | RSS MiB | growth since 0 | "
        + ("calls (one session, control) | RSS MiB | growth since 0 |" if control else ""),
        "| ---: | ---: | ---: |" + (" ---: | ---: | ---: |" if control else ""),
    ]
    for i, (calls, rss, _t) in enumerate(distinct):
        row = f"| {calls:,} | {rss / 1024:.1f} | {(rss - distinct[0][1]) / 1024:+.1f} |"
        if control and i < len(control):
            c_calls, c_rss, _ = control[i]
            row += f" {c_calls:,} | {c_rss / 1024:.1f} | {(c_rss - control[0][1]) / 1024:+.1f} |"
        lines.append(row)
    d_growth = (distinct[-1][1] - distinct[1][1]) / 1024 if len(distinct) > 1 else 0.0
    lines += [
        "",
        f"Growth from the first checkpoint ({distinct[1][0]:,} calls) to the last ({distinct[-1][0]:,}): "
        f"{d_growth:+.1f} MiB with distinct sessions"
        + (f", {(control[-1][1] - control[1][1]) / 1024:+.1f} MiB with one session." if control and len(control) > 1 else "."),
        "",
        "For scale: one shared-data entry per session (key + 1,820-byte slot + map overhead, ~2 KiB) "
        f"would be ~{args.calls * 2000 / 2**20:.0f} MiB for {args.calls:,} sessions, in every Envoy, never freed.",
        "",
        f"Run time: {time.monotonic() - started:.0f} s.",
        "",
    ]
    report = "\n".join(lines)
    print()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
