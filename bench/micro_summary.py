"""Summarises the criterion results of `make bench-micro` (engine/benches/
decide.rs) as bench/results/micro.md: median time per call and throughput.

    python bench/micro_summary.py [target dir]
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else REPO / "target"
    root = target / "criterion"
    rows = []
    for est in sorted(root.glob("*/*/*/new/estimates.json")):
        meta = json.loads((est.parent / "benchmark.json").read_text())
        if meta["group_id"] not in ("parse", "decide", "patterns"):
            continue
        e = json.loads(est.read_text())
        median_ns = e["median"]["point_estimate"]
        lo = e["median"]["confidence_interval"]["lower_bound"]
        hi = e["median"]["confidence_interval"]["upper_bound"]
        size = (meta.get("throughput") or {}).get("Bytes", 0)
        mibs = size / (median_ns / 1e9) / 2**20 if size else 0.0
        rows.append((meta["group_id"], meta["function_id"], meta["value_str"], size, median_ns, lo, hi, mibs))
    if not rows:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    order = {"1KiB": 0, "16KiB": 1, "256KiB": 2}
    rows.sort(key=lambda r: (r[0] != "decide", r[1], order.get(r[2], 9)))
    lines = [
        "# Engine micro-benchmarks (criterion, native)",
        "",
        f"- {dt.datetime.now().isoformat(timespec='seconds')}; `cargo bench -p mcp-policy-engine --features testing --bench decide`",
        "- decide = strict parse + classify + policy + both rate-limit counters (MemoryStore) + answer; "
        "parse = `json::parse` alone (`escaped`: the benchmark padding with `\\n` escapes; `plain`: none); "
        "patterns = `Policy::decide` for one name under 400 pattern entries",
        "- median per call with its 95% interval (wall clock: noisy on a shared 2-core machine)",
        "",
        "| benchmark | body | median us | 95% interval us | MiB/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for group, fn, size_label, _size, med, lo, hi, mibs in rows:
        lines.append(f"| {group}/{fn} | {size_label} | {med / 1000:.2f} | {lo / 1000:.2f} - {hi / 1000:.2f} | {mibs:.0f} |")
    out = BENCH / "results" / "micro.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
