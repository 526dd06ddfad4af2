"""Start and stop real Envoy processes running the filter.

Each instance gets its own directory (config, log, admin address file), binds
its listener and admin interface to port 0 and reads the ports the kernel
gave back from the admin API, so any number of Envoys run side by side
without port races. `--disable-hot-restart` keeps them from sharing the
hot-restart shared memory (no base-id clashes).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "demo"))

import envoy_config  # noqa: E402

# `$MCP_POLICY_WASM` runs the suite against another build of the module.
WASM = Path(os.environ.get("MCP_POLICY_WASM") or REPO / "dist" / "mcp_policy.wasm").resolve()


def envoy_bin() -> str:
    """`$ENVOY_BIN`, else the pinned wheel's Envoy in the repo's venv."""
    return os.environ.get("ENVOY_BIN") or str(REPO / ".venv" / "bin" / "envoy")


@dataclass
class EnvoyOptions:
    """What differs between the Envoys the tests start, besides the policy."""

    allow_on_headers_stop_iteration: bool | None = True
    concurrency: int = 2
    runtime: str = "envoy.wasm.runtime.v8"
    upstream_port: int = 0
    vm_settings: dict | None = None  # vm_config.configuration (deployment-side settings)
    label: str = ""  # not rendered: tells apart otherwise identical Envoys that need fresh state
    wasm_path: Path = WASM
    # Extra static clusters (name, port on 127.0.0.1), e.g. the approval
    # service a policy names in approval.cluster.
    extra_clusters: tuple[tuple[str, int], ...] = ()


class EnvoyStartError(RuntimeError):
    pass


# Log lines Envoy writes when the filter's VM trapped (a panic aborts): from
# then on, with fail_open false, that worker answers 503 to everything.
VM_CRASH_MARKERS = ("Uncaught RuntimeError", "panic, the VM will stop")


class Envoy:
    """One Envoy process; `start()` returns once its listener accepts requests."""

    def __init__(self, policy: str | dict, options: EnvoyOptions, workdir: Path) -> None:
        self.policy = policy
        self.options = options
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "envoy.yaml"
        self.log_path = workdir / "envoy.log"
        self.admin_address_path = workdir / "admin.address"
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int = 0
        self.admin_port: int = 0
        self._scanned = 0  # log bytes already searched for VM crashes
        self._crash_lines: list[str] = []

    # -- life cycle ---------------------------------------------------------

    def bootstrap(self) -> str:
        """The Envoy configuration to run; subclasses with other layouts override it."""
        return envoy_config.dump(self.bootstrap_config(), header="rendered by tests/e2e/envoy_process.py")

    def bootstrap_config(self) -> dict:
        """`mcp-policy render envoy`'s bootstrap with this Envoy's options and policy."""
        config = envoy_config.bootstrap(
            self.policy,
            listen_port=0,
            listen_address="127.0.0.1",
            admin_port=0,
            upstream_port=self.options.upstream_port,
            wasm_path=self.options.wasm_path,
            runtime=self.options.runtime,
            allow_on_headers_stop_iteration=self.options.allow_on_headers_stop_iteration,
            vm_settings=self.options.vm_settings,
        )
        return envoy_config.with_extra_clusters(config, self.options.extra_clusters)

    def spawn(self) -> None:
        """Write the config and start the process, without waiting for it."""
        self.config_path.write_text(self.bootstrap(), encoding="utf-8")
        self.admin_address_path.unlink(missing_ok=True)
        command = [
            envoy_bin(),
            "-c", str(self.config_path),
            "--concurrency", str(self.options.concurrency),
            "--disable-hot-restart",
            "--admin-address-path", str(self.admin_address_path),
            "--log-level", "info",
            "--component-log-level", "wasm:debug",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start(self, timeout: float = 30.0) -> Envoy:
        self.spawn()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def wait_exit(self, timeout: float) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- state ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def vm_crashes(self) -> list[str]:
        """Log lines telling that a filter VM crashed (scanned incrementally)."""
        if self.log_path.exists():
            with open(self.log_path, "rb") as log:
                log.seek(self._scanned)
                chunk = log.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._scanned += len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                if any(marker in line for marker in VM_CRASH_MARKERS):
                    self._crash_lines.append(line[:400])
        return self._crash_lines

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(self.admin_url + path, timeout=5) as response:
            return response.read().decode()

    def stats(self, prefix: str = "") -> dict[str, int]:
        """Counters and gauges from /stats whose names start with `prefix`."""
        stats = {}
        for line in self.admin_get("/stats?filter=" + prefix).splitlines():
            name, _, value = line.partition(": ")
            if name.startswith(prefix) and value.strip().lstrip("-").isdigit():
                stats[name] = int(value)
        return stats

    def worker_connections(self) -> dict[int, int]:
        """Connections each worker thread accepted on the MCP listener so far."""
        counts: dict[int, int] = {}
        for name, value in self.stats("listener.").items():
            match = re.fullmatch(r"listener\.(?!admin\.).+\.worker_(\d+)\.downstream_cx_total", name)
            if match:
                counts[int(match[1])] = counts.get(int(match[1]), 0) + value
        return counts

    def _wait_ready(self, timeout: float) -> None:
        """Poll until the admin API says LIVE and the listener has its port."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise EnvoyStartError(f"envoy exited with {code} while starting:\n{self.log_tail()}")
            if self._probe():
                return
            time.sleep(0.05)
        raise EnvoyStartError(f"envoy not ready after {timeout}s:\n{self.log_tail()}")

    def _probe(self) -> bool:
        if not self.admin_port:
            try:
                address = self.admin_address_path.read_text().strip()
            except FileNotFoundError:
                return False
            if not address:
                return False
            self.admin_port = int(address.rsplit(":", 1)[1])
        try:
            if self.admin_get("/ready").strip() != "LIVE":
                return False
            listeners = json.loads(self.admin_get("/listeners?format=json"))
        except (urllib.error.URLError, OSError, ValueError):
            return False
        for status in listeners.get("listener_statuses", []):
            port = status.get("local_address", {}).get("socket_address", {}).get("port_value")
            if status.get("name") == "mcp_listener" and port:
                self.port = int(port)
                return True
        return False

    def log_tail(self, lines: int = 40, width: int = 400) -> str:
        """The last lines of the log, each cut to `width` characters."""
        tail = self.log_text().splitlines()[-lines:]
        return "\n".join(line if len(line) <= width else line[:width] + " [...]" for line in tail)


def start_expecting_failure(
    policy: str | dict, options: EnvoyOptions, workdir: Path, timeout: float = 30.0
) -> tuple[int | None, bool, str]:
    """Start Envoy with a policy that must be refused.

    Returns (exit code or None if it kept running, whether the listener came
    up, log text). Envoy is stopped before returning in any case.
    """
    envoy = Envoy(policy, options, workdir)
    envoy.spawn()
    deadline = time.monotonic() + timeout
    listening = False
    try:
        while time.monotonic() < deadline:
            code = envoy.wait_exit(0.05)
            if code is not None:
                return code, False, envoy.log_text()
            if envoy._probe():
                listening = True
                break
        return envoy.process.poll() if envoy.process else None, listening, envoy.log_text()
    finally:
        envoy.stop()
