"""`make test`: run every suite (a make target each), even after one fails,
then print one table (suite, result, passed, failed, skipped, seconds) and
exit 1 if any suite failed.

Counts come from the summaries the suites print: pytest's last line
(`3 passed, 1 skipped in 2.1s`) and cargo's `test result:` lines (summed
over all test binaries). A suite without tests (lint) shows only its result;
a suite whose command fails counts as failed even when no test did (a build
error). Output streams through unchanged.

Usage: python3 tools/run_suites.py SUITE... (the Makefile's TEST_SUITES)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

# pytest: "== 12 passed, 1 failed, 2 skipped, 1 xfailed in 3.40s ==" (or the
# -q form without the bars); cargo: "test result: ok. 5 passed; 0 failed; 2 ignored; ...".
PYTEST_SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in [\d.]+s(?: \([\d:]+\))?\s*=*$")
PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
CARGO_SUMMARY = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


@dataclass
class Result:
    suite: str
    code: int | None = None  # None: not run (interrupted)
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    @property
    def status(self) -> str:
        if self.code is None:
            return "not run"
        return "ok" if self.code == 0 else "FAILED"


def parse_line(line: str, result: Result) -> None:
    """Adds the counts of one summary line, if it is one."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", line).strip()
    if m := CARGO_SUMMARY.search(text):
        result.add("passed", int(m[1]))
        result.add("failed", int(m[2]))
        result.add("skipped", int(m[3]))
    elif m := PYTEST_SUMMARY.match(text):
        for n, kind in PYTEST_COUNT.findall(m[1]):
            kind = {"error": "failed", "errors": "failed", "xpassed": "failed", "xfailed": "skipped",
                     "deselected": "skipped"}.get(kind, kind)  # fmt: skip
            result.add(kind, int(n))


def run_suite(suite: str, make: str) -> Result:
    result = Result(suite)
    print(f"\n===== make {suite}", flush=True)
    start = time.monotonic()
    process = subprocess.Popen(
        [make, "--no-print-directory", suite], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
    )
    assert process.stdout is not None
    try:
        for raw in iter(process.stdout.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
            parse_line(raw.decode("utf-8", errors="replace"), result)
        result.code = process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()
        result.seconds = time.monotonic() - start
    return result


def table(results: list[Result]) -> str:
    rows = [("suite", "result", "passed", "failed", "skipped", "seconds")]
    for r in results:
        counted = bool(r.counts)
        rows.append((
            r.suite, r.status,
            *(str(r.counts.get(k, 0)) if counted else "-" for k in ("passed", "failed", "skipped")),
            f"{r.seconds:.0f}" if r.code is not None else "-",
        ))  # fmt: skip
    total = sum(r.seconds for r in results)
    rows.append(("total", "ok" if all(r.code == 0 for r in results) else "FAILED",
                 *(str(sum(r.counts.get(k, 0) for r in results)) for k in ("passed", "failed", "skipped")),
                 f"{total:.0f}"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if index in (0, len(rows) - 2):
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    make = os.environ.get("MAKE", "make")
    # A run started as a background job inherits SIGINT ignored; make it stoppable.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    results = [Result(suite) for suite in argv]
    interrupted = False
    for index, suite in enumerate(argv):
        try:
            results[index] = run_suite(suite, make)
        except KeyboardInterrupt:
            interrupted = True
            break
    print("\n===== make test: summary\n" + table(results), flush=True)
    if interrupted:
        print("interrupted", file=sys.stderr)
        return 130
    failed = [r.suite for r in results if r.code != 0]
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
