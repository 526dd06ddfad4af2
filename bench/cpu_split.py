"""User and system CPU per request of each proxy, side by side (1 KiB allowed call).

    python bench/cpu_split.py                                   # passthrough,native,hold,stream
    python bench/cpu_split.py --only passthrough,native,hold,noop-calls
    python bench/cpu_split.py --only hold,hold@/tmp/other.wasm  # two modules in one run

Same pinned setup as `bench/run.py` (proxy on CPU 1, wrk and the upstream on
CPU 0, interleaved rounds), but for the questions `make bench` does not
answer: is the difference user or kernel time, and what does a module
variant or a noop probe cost *in the same run*. Configurations:

- `passthrough`, `native`, `buffer`: as in `make bench`;
- `hold`, `stream`: the filter in that header mode; `hold@PATH` runs another
  module (e.g. an experiment build) in hold mode;
- `noop`: `bench/wasm-probes`' noop filter in hold mode (being a Wasm filter
  at all); `noop-calls`: the same probe making the host calls of an
  allowed call (headers, body, shared data, clock, metrics, filter state,
  response headers) with none of the filter's code.

Prints medians over the rounds of user and system CPU us per request, minor
page faults and context switches per request, and req/s.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness as h  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
PROBES = {"noop": "hold", "noop-calls": h.NOOP_ALLOWED_CALLS}


def snapshot(pid: int) -> dict[str, float]:
    """Cumulative CPU seconds, minor faults and context switches of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    voluntary = involuntary = 0
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for line in Path(status).read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
        except FileNotFoundError:  # a thread ended between glob and read
            pass
    return {
        "user": int(fields[11]) / TICK,
        "sys": int(fields[12]) / TICK,
        "minflt": int(fields[7]),
        "vol": voluntary,
        "inv": involuntary,
    }


def config_for(key: str, upstream_port: int, wasm: Path) -> str:
    if key in ("passthrough", "native", "buffer"):
        return h.proxy_config(key, upstream_port=upstream_port)
    if key in PROBES:
        return h.proxy_config("wasm", upstream_port=upstream_port, wasm_path=h.NOOP_WASM, policy=PROBES[key])
    mode, _, other = key.partition("@")
    if mode not in ("hold", "stream"):
        raise SystemExit(f"unknown configuration {key!r}")
    module = Path(other).resolve() if other else wasm
    return h.proxy_config("wasm", upstream_port=upstream_port, wasm_path=module, header_mode=mode)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="passthrough,native,hold,stream", help="comma-separated configurations")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3, help="per configuration and round")
    ap.add_argument("--wasm", type=Path, default=h.REPO / "dist" / "mcp_policy.wasm")
    args = ap.parse_args()
    keys = [k for k in args.only.split(",") if k]
    if any(k in PROBES for k in keys):
        h.build_noop_probe()
    work = Path(tempfile.mkdtemp(prefix="mcp-policy-cpu-"))
    body = work / "body.json"
    body.write_bytes(h.body(1024))
    upstream = h.Envoy("upstream", h.upstream_config(), work / "upstream", cpus="0").start()
    proxies: dict[str, h.Envoy] = {}
    samples: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
    try:
        for k in keys:
            name = k.replace("/", "_")  # `hold@/path/x.wasm` names a directory
            config = config_for(k, upstream.port, args.wasm.resolve())
            proxies[k] = h.Envoy(name, config, work / name, cpus="1").start()
            status, text = h.post(proxies[k].url, body.read_bytes())
            if status != 200 or text != h.UPSTREAM_RESULT:
                raise SystemExit(f"{k}: unexpected answer {status} {text[:120]!r}")
        for k in keys:
            h.run_wrk(proxies[k].url, body, 1, threads=2, connections=16, cpus="0")
        for r in range(args.rounds):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                before = snapshot(proxies[k].pid)
                w = h.run_wrk(proxies[k].url, body, args.seconds, threads=2, connections=16, cpus="0")
                after = snapshot(proxies[k].pid)
                n = max(w.requests, 1)
                per = {x: (after[x] - before[x]) / n for x in before}
                per["user"] *= 1e6
                per["sys"] *= 1e6
                samples[k].append(per | {"rps": w.rps})
    finally:
        for p in proxies.values():
            p.stop()
        upstream.stop()
    width = max(len(k) for k in keys) + 2
    print(f"{'configuration':{width}} {'user us':>8} {'sys us':>8} {'minflt':>8} {'vol cs':>8} {'inv cs':>8} {'req/s':>8}")
    for k in keys:
        m = {x: statistics.median(s[x] for s in samples[k]) for x in samples[k][0]}
        print(f"{k:{width}} {m['user']:8.1f} {m['sys']:8.1f} {m['minflt']:8.3f} {m['vol']:8.3f} {m['inv']:8.3f} "
              f"{m['rps']:8.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
