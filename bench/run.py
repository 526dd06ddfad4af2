"""End-to-end benchmark: Envoy passthrough vs this filter vs the native MCP
filter, same machine, same load generator (wrk), same upstream (an Envoy
answering with direct_response).

    python bench/run.py                 # what `make bench` runs
    python bench/run.py --rounds 1 --seconds 3 --only v8   # quick look

Every proxy runs with the same `--concurrency`; all are started once, checked
(one request per cell must give the expected answer), then measured in
interleaved rounds (each round runs every cell once, so slow drifts of a noisy
machine spread over all cells); the table shows the median of the rounds and
their spread [min, max], the added cost paired with passthrough's in the same
round. Proxies run on CPU 1, wrk and the upstream on CPU 0 (`--no-pin`: not).
Writes bench/results/<timestamp>.md and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

SIZES = {"1KiB": 1024, "16KiB": 16 * 1024, "256KiB": 256 * 1024}


@dataclass
class Config:
    key: str
    label: str
    kind: str  # passthrough | buffer | wasm | native
    runtime: str = "v8"
    header_mode: str = "hold"
    # cells: (case, size label)
    cells: list[tuple[str, str]] = field(default_factory=list)


def all_sizes(case: str) -> list[tuple[str, str]]:
    return [(case, s) for s in SIZES]


# An allowed 1 KiB call at a moderate, paced rate (see --paced-delay-ms).
PACED = [("paced", "1KiB")]


CONFIGS = [
    Config("passthrough", "Envoy passthrough (no filter)", "passthrough", cells=all_sizes("allowed") + PACED),
    Config("buffer", "Envoy buffer filter alone (floor)", "buffer", cells=all_sizes("allowed") + PACED),
    Config("v8", "mcp-policy, V8, hold", "wasm", cells=all_sizes("allowed") + [("refused", "1KiB")] + PACED),
    Config("v8-stream", "mcp-policy, V8, stream (default mode)", "wasm", header_mode="stream",
           cells=all_sizes("allowed") + [("refused", "1KiB")] + PACED),  # fmt: skip
    Config("native", "native envoy.filters.http.mcp + rbac", "native",
           cells=all_sizes("allowed") + [("refused", "1KiB")] + PACED),  # fmt: skip
    Config("wasmtime", "mcp-policy, Wasmtime, hold", "wasm", runtime="wasmtime",
           cells=all_sizes("allowed") + [("refused", "1KiB")]),  # fmt: skip
    Config("wamr", "mcp-policy, WAMR, hold", "wasm", runtime="wamr", cells=all_sizes("allowed") + [("refused", "1KiB")]),
]


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_req: float
    cpu_pct: float
    requests: int
    non_2xx: int
    socket_errors: int
    judged: int | None  # calls the filter counted during the run (None: not applicable)


@dataclass
class Cell:
    config: Config
    case: str
    size: str
    body_file: Path
    status: str = "ok"  # or why it was not measured
    samples: list[Sample] = field(default_factory=list)
    rss_kib: int = 0

    @property
    def name(self) -> str:
        return f"{self.config.key}/{self.case}/{self.size}"


def expected(cfg: Config, case: str, status: int, text: bytes) -> str | None:
    """None if the answer is what this configuration must give, else why not."""
    allowed = cfg.kind in ("passthrough", "buffer") or case in ("allowed", "paced")
    if allowed:
        if status == 200 and text == h.UPSTREAM_RESULT:
            return None
        return f"expected the upstream's answer, got {status} {text[:120]!r}"
    if cfg.kind == "native":
        return None if status == 403 else f"expected 403 from rbac, got {status} {text[:120]!r}"
    if status == 200 and b"-31001" in text:
        return None
    return f"expected a -31001 refusal, got {status} {text[:120]!r}"


def filter_counter(cfg: Config, case: str) -> str | None:
    """The stat that must grow by one per request, proving the filter judged it."""
    if cfg.kind == "wasm":
        return "wasmcustom.mcp_policy.calls." + ("denied" if case == "refused" else "allowed")
    if cfg.kind == "native":
        return "http.mcp.rbac." + ("denied" if case == "refused" else "allowed")
    return None


def read_counter(envoy: h.Envoy, name: str) -> int:
    return envoy.stats(name).get(name, 0)


def crash_reason(envoy: h.Envoy) -> str:
    for line in envoy.log_tail(200).splitlines():
        if "panic" in line or "Uncaught RuntimeError" in line or "compiled without support" in line:
            return line.split("]", 5)[-1].strip()[:200]
    return ""


def measure(cell: Cell, envoy: h.Envoy, args: argparse.Namespace, seconds: int) -> Sample:
    counter = filter_counter(cell.config, cell.case)
    before = read_counter(envoy, counter) if counter else None
    cpu0, t0 = envoy.cpu_seconds(), time.monotonic()
    paced = cell.case == "paced"
    r = h.run_wrk(envoy.url, cell.body_file, seconds, threads=args.threads,
                  connections=args.paced_connections if paced else args.connections, cpus=args.client_cpus,
                  env={"BENCH_DELAY_MS": str(args.paced_delay_ms)} if paced else None)  # fmt: skip
    wall = time.monotonic() - t0
    cpu = envoy.cpu_seconds() - cpu0
    judged = read_counter(envoy, counter) - before if counter and before is not None else None
    return Sample(
        rps=r.rps,
        p50_ms=r.p50_ms,
        p99_ms=r.p99_ms,
        cpu_us_per_req=1e6 * cpu / r.requests if r.requests else float("nan"),
        cpu_pct=100 * cpu / wall,
        requests=r.requests,
        non_2xx=r.non_2xx,
        socket_errors=r.socket_errors,
        judged=judged,
    )


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=int, default=2, help="measured seconds per cell and round")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up seconds per cell (first round only)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--paced-connections", type=int, default=4, help="wrk connections of the paced cells")
    ap.add_argument("--paced-delay-ms", type=int, default=2,
                    help="paced cells: each connection waits this long between requests (a moderate, equal rate)")
    ap.add_argument("--concurrency", type=int, default=1, help="Envoy --concurrency of every proxy and the upstream")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                    help="pin proxies to CPU 1, upstream and wrk to CPU 0 (default when there are 2+ CPUs)")
    ap.add_argument("--only", default="", help="comma-separated config keys (passthrough and buffer are always kept)")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated body sizes")
    ap.add_argument("--wasm", type=Path, default=h.REPO / "dist" / "mcp_policy.wasm")
    ap.add_argument("--results", type=Path, default=h.BENCH / "results")
    args = ap.parse_args(argv)
    args.client_cpus = "0" if args.pin else None
    proxy_cpus = "1" if args.pin else None

    started = time.monotonic()
    if not args.wasm.exists():
        print(f"no module at {args.wasm}: run `make build`", file=sys.stderr)
        return 2
    h.ensure_wrk()
    only = {k for k in args.only.split(",") if k}
    sizes = [s for s in args.sizes.split(",") if s]
    configs = [c for c in CONFIGS if not only or c.key in only or c.key in ("passthrough", "buffer")]
    work = Path(tempfile.mkdtemp(prefix="mcp-policy-bench-"))
    bodies = {}
    for size in sizes:
        for case, tool in (("allowed", h.ALLOWED_TOOL), ("refused", h.REFUSED_TOOL)):
            f = work / f"{case}-{size}.json"
            f.write_bytes(h.body(SIZES[size], tool))
            bodies[(case, size)] = f

    envoy_version = h.envoy_version()
    module_bytes = args.wasm.stat().st_size
    print(f"Envoy {envoy_version}; module {args.wasm} ({module_bytes} bytes); work dir {work}", flush=True)

    upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream", concurrency=args.concurrency,
                       cpus=args.client_cpus).start()  # fmt: skip
    envoys: dict[str, h.Envoy] = {}
    unavailable: dict[str, str] = {}
    idle_rss: dict[str, int] = {}
    cells: list[Cell] = []
    try:
        for cfg in configs:
            config = h.proxy_config(cfg.kind, upstream_port=upstream.port, wasm_path=args.wasm.resolve(),
                                    runtime=cfg.runtime, header_mode=cfg.header_mode)  # fmt: skip
            envoy = h.Envoy(cfg.key, config, work / cfg.key, concurrency=args.concurrency, cpus=proxy_cpus)
            t = time.monotonic()
            try:
                envoy.start()
            except h.EnvoyStartError as e:
                reason = crash_reason(envoy) or str(e).splitlines()[0]
                unavailable[cfg.key] = reason
                print(f"  {cfg.key}: not available: {reason}", flush=True)
                continue
            envoys[cfg.key] = envoy
            time.sleep(0.3)
            idle_rss[cfg.key] = envoy.rss_kib()
            print(f"  {cfg.key}: started in {time.monotonic() - t:.1f}s, idle RSS {idle_rss[cfg.key] / 1024:.0f} MiB", flush=True)
            for case, size in cfg.cells:
                if size not in sizes:
                    continue
                cell = Cell(cfg, case, size, bodies[("refused" if case == "refused" else "allowed", size)])
                cells.append(cell)
                status, text = h.post(envoy.url, cell.body_file.read_bytes())
                problem = expected(cfg, case, status, text)
                if problem:
                    crash = crash_reason(envoy)
                    cell.status = problem + (f"; log: {crash}" if crash else "")
                    print(f"    {cell.name}: check FAILED: {cell.status}", flush=True)

        live = [c for c in cells if c.status == "ok"]
        per_round = len(live) * args.seconds
        print(f"{len(live)} cells x {args.rounds} rounds x {args.seconds}s "
              f"(~{(per_round * args.rounds + len(live) * args.warmup) / 60:.1f} min)", flush=True)  # fmt: skip
        for rnd in range(args.rounds):
            # Rotate the order each round so no cell always runs first or last.
            order = live[rnd % len(live) :] + live[: rnd % len(live)] if live else []
            for i, cell in enumerate(order, 1):
                envoy = envoys[cell.config.key]
                if rnd == 0 and args.warmup:
                    h.run_wrk(envoy.url, cell.body_file, args.warmup, threads=args.threads,
                              connections=args.connections, cpus=args.client_cpus)  # fmt: skip
                s = measure(cell, envoy, args, args.seconds)
                cell.samples.append(s)
                cell.rss_kib = envoy.rss_kib()
                print(f"  round {rnd + 1}/{args.rounds} [{i:2}/{len(order)}] {cell.name:26} {s.rps:9.0f} req/s "
                      f"p50 {s.p50_ms:6.2f} ms p99 {s.p99_ms:7.2f} ms cpu {s.cpu_us_per_req:6.1f} us/req "
                      f"({s.cpu_pct:3.0f}%)", flush=True)  # fmt: skip
    finally:
        for e in envoys.values():
            e.stop()
        upstream.stop()

    elapsed = time.monotonic() - started
    report = render(cells, configs, unavailable, idle_rss, args, envoy_version, module_bytes, elapsed)
    print()
    print(report)
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.results / f"{stamp}.md"
    out.write_text(report)
    shutil.copyfile(out, args.results / "latest.md")
    print(f"wrote {out} and {args.results / 'latest.md'} ({elapsed:.0f}s)")
    shutil.rmtree(work, ignore_errors=True)
    failed = [c for c in cells if c.status != "ok"]
    return 1 if failed and not [c for c in cells if c.samples] else 0


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v != v else f"{v:,.{digits}f}"  # NaN -> "-"


def spread(values: list[float], digits: int = 1) -> str:
    """median [min, max] of a list of round values."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0], digits)
    return f"{fmt(med(values), digits)} [{fmt(min(values), digits)}, {fmt(max(values), digits)}]"


def paired(cell: Cell, base: Cell | None, attr: str) -> list[float]:
    """Per round, the cell's value minus another's (passthrough's, native's)
    in the same round (rounds are interleaved, so both saw the same machine)."""
    if base is None:
        return []
    return [getattr(a, attr) - getattr(b, attr) for a, b in zip(cell.samples, base.samples)]


def table(cells: list[Cell], base_cells: dict, native_cells: dict, floor: dict) -> list[str]:
    """One row per measured cell; added cost paired with passthrough's, and
    with the native chain's (same case and size) for the filter's rows."""
    lines = [
        "| configuration | call | body | req/s | vs passthrough | CPU us/req | +us/req | x floor | vs native us/req "
        "| p50 ms | p99 ms | +p99 ms | RSS MiB |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cells:
        if not c.samples:
            continue
        base = base_cells.get((c.case if c.case == "paced" else "allowed", c.size))
        rps = med([s.rps for s in c.samples])
        b_rps = med([s.rps for s in base.samples]) if base else float("nan")
        ratio = f"{rps / b_rps:.2f}" if b_rps == b_rps and b_rps else "-"
        is_base = c.config.kind == "passthrough"
        added = [] if is_base else paired(c, base, "cpu_us_per_req")
        fl = floor.get((c.case if c.case == "paced" else "allowed", c.size))
        x_floor = f"{med(added) / fl:.2f}" if added and fl and fl > 0 and c.config.kind != "buffer" else "-"
        native = native_cells.get((c.case, c.size)) if c.config.kind == "wasm" else None
        vs_native = spread(paired(c, native, "cpu_us_per_req")) if native else "-"
        p99_added = "-" if is_base else fmt(med(paired(c, base, "p99_ms")), 2)
        case = "any" if c.config.kind in ("passthrough", "buffer") else ("allowed" if c.case == "paced" else c.case)
        lines.append(
            f"| {c.config.label} | {case} | {c.size} | {fmt(rps)} | {ratio} | "
            f"{spread([s.cpu_us_per_req for s in c.samples])} | {spread(added) if added else '-'} | {x_floor} | "
            f"{vs_native} | {fmt(med([s.p50_ms for s in c.samples]), 2)} | "
            f"{fmt(med([s.p99_ms for s in c.samples]), 2)} | {p99_added} | {c.rss_kib / 1024:.0f} |"
        )
    return lines


def goal_check(cells: list[Cell]) -> list[str]:
    """Issue 16's goal, judged on this run's paired medians."""
    by = {(c.config.key, c.case, c.size): c for c in cells if c.samples}
    out = []

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "**not met**"

    def vs_native(key: str, case: str, size: str) -> float | None:
        a, n = by.get((key, case, size)), by.get(("native", case, size))
        return med(paired(a, n, "cpu_us_per_req")) if a and n else None

    for key, mode in (("v8", "hold"), ("v8-stream", "stream")):
        d = vs_native(key, "allowed", "1KiB")
        if d is not None:
            out.append(f"- allowed 1 KiB, {mode}: CPU {d:+.1f} us/req vs native (median of paired rounds): {verdict(d <= 0)}")
        a, n = by.get((key, "allowed", "1KiB")), by.get(("native", "allowed", "1KiB"))
        if a and n:
            ra, rn = med([s.rps for s in a.samples]), med([s.rps for s in n.samples])
            out.append(f"- allowed 1 KiB, {mode}: {ra:,.0f} req/s vs native {rn:,.0f}: {verdict(ra >= rn)}")
        for size in ("16KiB", "256KiB"):
            d = vs_native(key, "allowed", size)
            if d is not None:
                out.append(f"- allowed {size}, {mode}: CPU {d:+.1f} us/req vs native: {verdict(d <= 0)}")
        a, b = by.get((key, "paced", "1KiB")), by.get(("passthrough", "paced", "1KiB"))
        if a and b:
            p = med(paired(a, b, "p99_ms"))
            out.append(f"- paced 1 KiB, {mode}: p99 {p:+.2f} ms over passthrough (goal <= 0.5): {verdict(p <= 0.5)}")
    a, f, b = by.get(("v8", "allowed", "1KiB")), by.get(("buffer", "allowed", "1KiB")), by.get(("passthrough", "allowed", "1KiB"))
    if a and f and b:
        fa, ff = med(paired(a, b, "cpu_us_per_req")), med(paired(f, b, "cpu_us_per_req"))
        if ff > 0:
            out.append(f"- stretch, allowed 1 KiB hold: +{fa:.1f} us/req = {fa / ff:.2f}x the buffer filter's +{ff:.1f} (stretch <= 1.25x)")
    return out


def render(cells, configs, unavailable, idle_rss, args, envoy_version, module_bytes, elapsed) -> str:
    m = h.machine()
    base_cells = {(c.case, c.size): c for c in cells if c.config.kind == "passthrough" and c.samples}
    native_cells = {(c.case, c.size): c for c in cells if c.config.kind == "native" and c.samples}
    floor = {
        (c.case, c.size): med(paired(c, base_cells.get((c.case, c.size)), "cpu_us_per_req"))
        for c in cells
        if c.config.kind == "buffer" and c.samples
    }
    lines = [
        "# mcp-policy benchmark",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}",
        f"- Envoy {envoy_version}, `--concurrency {args.concurrency}` for every proxy and for the upstream"
        + (" (proxies pinned to CPU 1, upstream and wrk to CPU 0)" if args.pin else " (not pinned)"),
        f"- module: `{args.wasm.name}` {module_bytes:,} bytes ({module_bytes / 1024:.0f} KiB)",
        f"- load: {h.wrk_version()}, {args.threads} threads, {args.connections} connections, HTTP/1.1 keep-alive; "
        f"{args.rounds} interleaved round(s) of {args.seconds} s per cell after a {args.warmup} s warm-up",
        "- upstream: a second Envoy, buffer filter + `direct_response` 200 with a 90-byte JSON-RPC result",
        "- policy: `bench/policy.json` (20 tools, default deny, 3 argument rules and 2 limits on the called tool: "
        "a grant limit and a global `*` limit, both 1e9/minute); refused = a call to `delete_repository` (`action: deny`)",
        "- filter settings: `vm_config.configuration` `{\"header_mode\":\"hold\"}` + `allow_on_headers_stop_iteration: true` "
        "(as `envoy/envoy.yaml`), except the `stream` rows (neither set)",
        "- floor: Envoy's `envoy.filters.http.buffer` alone (max_request_bytes 1 MiB): what any filter that reads the "
        "whole body before deciding costs at least",
        "- native: `envoy.filters.http.mcp` (max_request_body_size 1 MiB) + `rbac` ALLOW policy listing the same 19 allowed tools "
        "(refused call: 403 `RBAC: access denied`)",
        "",
        "CPU us/req: CPU time (user+sys, all threads) of the proxy Envoy per completed request; "
        "+us/req: that minus passthrough's in the same round at the same body size. Shown as median [min, max] "
        "over the rounds. x floor: +us/req over the buffer filter's. vs native: the filter's CPU us/req minus the "
        "native chain's in the same round (same call and size; negative = cheaper than native). +p99: p99 latency "
        "minus passthrough's (same round), median. RSS: after the cell's last run.",
        "",
        f"## Saturating load ({args.connections} connections, as fast as the proxy answers)",
        "",
        *table([c for c in cells if c.case != "paced"], base_cells, native_cells, floor),
        "",
        f"## Paced load ({args.paced_connections} connections, each waiting {args.paced_delay_ms} ms between "
        "requests): added latency and CPU at a moderate, equal rate",
        "",
        "Under saturating load latency is mostly queueing (16 connections / req/s); here every configuration "
        "sees about the same moderate rate, so +p99 is the latency the filter itself adds.",
        "",
        *table([c for c in cells if c.case == "paced"], base_cells, native_cells, floor),
        "",
        "## Goal of issue 16, judged on this run",
        "",
        *goal_check(cells),
        "- memory: `make bench-envoy-memory` (results/envoy_memory.md)",
    ]
    notes = []
    for key, reason in unavailable.items():
        label = next(c.label for c in configs if c.key == key)
        notes.append(f"- **{label}: not measured**: Envoy refused the configuration: `{reason}`")
    for c in cells:
        if c.status != "ok":
            notes.append(f"- **{c.name}: not measured**: {c.status}")
    for c in cells:
        bad = [s for s in c.samples if s.socket_errors or (s.non_2xx and not (c.config.kind == "native" and c.case == "refused"))]
        if bad:
            notes.append(f"- {c.name}: {sum(s.non_2xx for s in bad)} non-2xx answers, {sum(s.socket_errors for s in bad)} socket errors")
        short = [s for s in c.samples if s.judged is not None and s.judged < s.requests]
        if short:
            notes.append(f"- {c.name}: the filter counted fewer calls than wrk completed ({short[0].judged} < {short[0].requests})")
    if notes:
        lines += ["", "## Not measured / anomalies", "", *notes]
    lines += ["", "## Idle RSS (after start, before load)", "", "| configuration | RSS MiB |", "| --- | ---: |"]
    for c in configs:
        if c.key in idle_rss:
            lines.append(f"| {c.label} | {idle_rss[c.key] / 1024:.0f} |")
    lines += ["", "## Every round", "", "| cell | round | req/s | p50 ms | p99 ms | CPU us/req | proxy CPU % | requests | judged by filter |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for c in cells:
        for i, s in enumerate(c.samples, 1):
            lines.append(f"| {c.name} | {i} | {fmt(s.rps)} | {s.p50_ms:.2f} | {s.p99_ms:.2f} | {s.cpu_us_per_req:.1f} | "
                         f"{s.cpu_pct:.0f} | {s.requests} | {'-' if s.judged is None else s.judged} |")  # fmt: skip
    lines += ["", f"Total run time: {elapsed:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
