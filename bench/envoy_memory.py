"""Envoy's memory with and without the filter, and where the difference goes.

Starts a fresh proxy Envoy per cell (configuration x `--concurrency`), waits
until it is ready, lets it settle, and reads its memory idle and again after
a short wrk run of 1 KiB allowed calls (so every worker has built its VM and
served requests). Each cell runs `--rounds` times (fresh process each time);
the table shows the median.

Columns, per Envoy process:
- RSS: VmRSS (/proc/<pid>/status); RssFile = pages of the mapped `envoy`
  binary and libraries (shared with any other Envoy on the host, evictable),
  RssAnon = the process's own memory.
- tcmalloc (admin `/memory`): `heap_size` (what the allocator holds from the
  OS), `allocated` (live), `pageheap_free` (freed, kept mapped) and the
  per-thread caches. V8's compiler zones and module data come from here.
- JIT code: RSS of the anonymous executable mappings (V8's Wasm code space).

Configurations: Envoy passthrough (no Wasm filter), an empty module
(bench/wasm-probes/wat/empty_filter.wat: V8's own cost), the `noop_filter` probe
of bench/wasm-probes (a proxy-wasm filter that only continues: the floor of
any Rust proxy-wasm filter in Envoy's V8), and the filter
(dist/mcp_policy.wasm, hold mode, the bench policy). `--wasm LABEL=PATH`
adds other builds of the filter (e.g. another opt-level);
`--listeners N` serves the filter on N listeners (same vm_id and settings).

    python bench/envoy_memory.py [--concurrency 1,2,4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

import envoy_config  # noqa: E402  (harness put demo/ on the path)

PROBES = h.BENCH / "wasm-probes"
NOOP = PROBES / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
ALLOWED = "wasmcustom.mcp_policy.calls.allowed"
FIELDS = ["rss", "rss_file", "rss_anon", "heap_size", "allocated", "pageheap_free", "thread_cache", "jit"]


def sample(envoy: h.Envoy) -> dict[str, int]:
    """Memory of one Envoy, KiB."""
    out = {
        "rss": h.proc_status_kib(envoy.pid, "VmRSS"),
        "rss_file": h.proc_status_kib(envoy.pid, "RssFile"),
        "rss_anon": h.proc_status_kib(envoy.pid, "RssAnon"),
        "jit": 0,
    }
    mem = json.loads(envoy.admin_get("/memory"))
    out["heap_size"] = int(mem.get("heap_size", 0)) // 1024
    out["allocated"] = int(mem.get("allocated", 0)) // 1024
    out["pageheap_free"] = int(mem.get("pageheap_free", 0)) // 1024
    out["thread_cache"] = int(mem.get("total_thread_cache", 0)) // 1024
    executable_anon = False
    with open(f"/proc/{envoy.pid}/smaps") as f:
        for line in f:
            head = line.split()
            if head and not head[0].endswith(":"):
                # a mapping line: address perms offset dev inode [path]
                executable_anon = len(head) >= 2 and "x" in head[1] and (len(head) < 6 or not head[5].startswith("/"))
            elif executable_anon and head[0] == "Rss:":
                out["jit"] += int(head[1])
    return out


def with_listeners(config_yaml: str, n: int) -> str:
    """The filter served on `n` listeners (copies of mcp_listener on their own
    ports, identical Wasm filter config, so Envoy may share one VM)."""
    if n <= 1:
        return config_yaml
    import yaml

    config = yaml.safe_load(config_yaml)
    listeners = config["static_resources"]["listeners"]
    base = listeners[0]
    for i in range(1, n):
        extra = copy.deepcopy(base)
        extra["name"] = f"extra_listener_{i}"
        listeners.append(extra)
    return envoy_config.dump(config, "rendered by bench/envoy_memory.py")


def with_release(config_yaml: str, release_mib: int | None) -> str:
    """Bootstrap `memory_allocator_manager` (tcmalloc hands up to
    `release_mib` MiB of freed memory back to the OS every second): None
    keeps the rendered bootstrap's setting, 0 removes it."""
    if release_mib is None:
        return config_yaml
    import yaml

    config = yaml.safe_load(config_yaml)
    if release_mib <= 0:
        config.pop("memory_allocator_manager", None)
    else:
        config["memory_allocator_manager"] = {"bytes_to_release": release_mib << 20, "memory_release_interval": "1s"}
    return envoy_config.dump(config, "rendered by bench/envoy_memory.py")


def cell(label: str, config: str, concurrency: int, upstream: h.Envoy, work: Path, body_file: Path, seconds: int, settle: float) -> tuple[dict, dict, int]:
    envoy = h.Envoy(label, config, work / f"{label}-{concurrency}", concurrency=concurrency, log_level="warn").start()
    try:
        time.sleep(settle)
        idle = sample(envoy)
        # wrk's connections spread over the workers (SO_REUSEPORT).
        r = h.run_wrk(envoy.url, body_file, seconds, threads=2, connections=max(16, 8 * concurrency))
        time.sleep(settle)
        loaded = sample(envoy)
        if r.non_2xx or r.socket_errors:
            print(f"    warning: {label}: {r.non_2xx} non-2xx, {r.socket_errors} socket errors", flush=True)
        if label not in ("passthrough", "empty", "noop"):
            # The filter judged the calls (its counter grew with wrk's count).
            judged = envoy.stats(ALLOWED).get(ALLOWED, 0)
            if judged < r.requests:
                print(f"    warning: {label}: the filter allowed {judged} of {r.requests} calls", flush=True)
        return idle, loaded, r.requests
    finally:
        envoy.stop()


def ensure_noop() -> Path | None:
    """The noop probe, built with the filter's release settings (stripped)."""
    out = PROBES / "target" / "noop-stripped" / "noop_filter.wasm"
    if out.exists() and NOOP.exists() and out.stat().st_mtime >= NOOP.stat().st_mtime:
        return out
    r = subprocess.run(
        ["cargo", "build", "-q", "--release", "--manifest-path", str(PROBES / "Cargo.toml"),
         "--target", "wasm32-wasip1", "--lib"],
        env={**os.environ, "CARGO_PROFILE_RELEASE_DEBUG": "false", "CARGO_PROFILE_RELEASE_STRIP": "true"},
    )  # fmt: skip
    if r.returncode != 0 or not NOOP.exists():
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(NOOP, out)
    return out


def ensure_empty(work: Path) -> Path | None:
    """wasm-probes/wat/empty_filter.wat assembled (wat2wasm, Debian `wabt`)."""
    wat2wasm = shutil.which("wat2wasm")
    if wat2wasm is None:
        print("wat2wasm not found: installing it with apt-get (Debian package wabt)", flush=True)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        if subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wabt"], capture_output=True).returncode != 0:
            subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True)
            subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wabt"], capture_output=True)
        wat2wasm = shutil.which("wat2wasm")
    if wat2wasm is None:
        return None
    out = work / "empty_filter.wasm"
    r = subprocess.run([wat2wasm, str(PROBES / "wat" / "empty_filter.wat"), "-o", str(out)])
    return out if r.returncode == 0 else None


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,2,4", help="comma-separated worker counts")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=3, help="wrk seconds per cell")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each sample")
    ap.add_argument("--listeners", type=int, default=1, help="listeners serving the filter")
    ap.add_argument("--wasm", action="append", default=[], metavar="LABEL=PATH", help="another module to measure")
    ap.add_argument("--release-mib", type=int, default=None,
                    help="memory_allocator_manager: MiB released per second (0: none; default: as rendered)")
    ap.add_argument("--no-noop", action="store_true", help="skip the empty module and the noop probe")
    ap.add_argument("--out", type=Path, default=h.BENCH / "results" / "envoy_memory.md")
    args = ap.parse_args(argv)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    module = h.REPO / "dist" / "mcp_policy.wasm"
    if not module.exists():
        print(f"no module at {module}: run `make build`", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="mcp-envoy-memory-"))
    configs: list[tuple[str, str, Path | None]] = [("passthrough", "Envoy passthrough (no Wasm)", None)]
    if not args.no_noop:
        empty = ensure_empty(work)
        if empty is None:
            print("wat2wasm unavailable: skipping the empty module", file=sys.stderr)
        else:
            configs.append(("empty", f"empty proxy-wasm module, WAT ({empty.stat().st_size:,} B)", empty))
        noop = ensure_noop()
        if noop is None:
            print("noop probe did not build: skipping it", file=sys.stderr)
        else:
            configs.append(("noop", f"noop proxy-wasm filter ({noop.stat().st_size:,} B)", noop))
    configs.append(("mcp-policy", f"mcp-policy ({module.stat().st_size:,} B)", module))
    for spec in args.wasm:
        label, _, path = spec.partition("=")
        p = Path(path).resolve()
        configs.append((label, f"{label} ({p.stat().st_size:,} B)", p))

    body_file = work / "body.json"
    body_file.write_bytes(h.body(1024))
    upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream").start()
    results: dict[tuple[str, int], list[tuple[dict, dict, int]]] = {}
    try:
        for rnd in range(args.rounds):
            for key, _label, path in configs:
                kind = "passthrough" if path is None else "wasm"
                policy = "" if key in ("noop", "empty") else None
                cfg = h.proxy_config(kind, upstream_port=upstream.port, wasm_path=path, policy=policy)
                cfg = with_release(with_listeners(cfg, args.listeners), args.release_mib)
                for c in concurrencies:
                    idle, loaded, n = cell(key, cfg, c, upstream, work, body_file, args.seconds, args.settle)
                    results.setdefault((key, c), []).append((idle, loaded, n))
                    print(f"  round {rnd + 1} {key} x{c}: idle {mib(idle['rss'])} MiB, after {n} calls "
                          f"{mib(loaded['rss'])} MiB (anon {mib(loaded['rss_anon'])}, file {mib(loaded['rss_file'])}, "
                          f"tcmalloc heap {mib(loaded['heap_size'])}, JIT {mib(loaded['jit'])})", flush=True)  # fmt: skip
    finally:
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str, c: int, phase: int, field: str) -> float:
        return statistics.median(r[phase][field] for r in results[(key, c)])

    release_note = "memory_allocator_manager as rendered" if args.release_mib is None else f"`--release-mib {args.release_mib}`"
    lines = [
        "# Envoy memory: passthrough, an empty Wasm module, a no-op Rust filter, mcp-policy",
        "",
        f"Envoy {h.envoy_version()}; {h.machine()['cpu']}; `--listeners {args.listeners}`; "
        f"{release_note}; "
        f"median of {args.rounds} fresh processes per cell; took {time.monotonic() - started:.0f} s.",
        f"Idle = {args.settle:g} s after ready; loaded = {args.settle:g} s after a "
        f"{args.seconds} s wrk run of 1 KiB allowed calls. MiB. `bench/envoy_memory.py`.",
        "",
        "| configuration | workers | idle RSS | loaded RSS | +RSS vs passthrough | RssFile | RssAnon | tcmalloc heap | allocated | pageheap free | thread caches | JIT code |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label, _ in configs:
        for c in concurrencies:
            base = med("passthrough", c, 1, "rss")
            row = [label, str(c), mib(med(key, c, 0, "rss")), mib(med(key, c, 1, "rss")),
                   "-" if key == "passthrough" else f"+{mib(med(key, c, 1, 'rss') - base)}"]  # fmt: skip
            row += [mib(med(key, c, 1, f)) for f in FIELDS[1:]]
            lines.append("| " + " | ".join(row) + " |")
    if len(concurrencies) > 1:
        lines += ["", "Per added worker (loaded RSS, first to last worker count):", ""]
        lo, hi = concurrencies[0], concurrencies[-1]
        for key, label, _ in configs:
            slope = (med(key, hi, 1, "rss") - med(key, lo, 1, "rss")) / (hi - lo)
            lines.append(f"- {label}: {slope / 1024:+.1f} MiB per worker")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
