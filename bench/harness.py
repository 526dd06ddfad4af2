"""Shared pieces of the benchmarks: bodies, Envoy configurations, processes,
wrk runs and machine facts.

Envoy configurations: every one is `mcp-policy render envoy`'s bootstrap
(through demo/envoy_config.py, as for `make run` and the tests).
Passthrough and the native MCP filter swap the Wasm filter for theirs, so
every proxy differs only in its HTTP filters. The upstream is a second
Envoy from the same bootstrap answering a small JSON-RPC result with
`direct_response` after buffering the request (so it reads each body to its
end and keeps its connections alive).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "demo"))

import envoy_config  # noqa: E402

# bench/wasm-probes' noop filter: a proxy-wasm filter with none of this
# filter's code; its plugin configuration lists the host calls to make.
NOOP_WASM = BENCH / "wasm-probes" / "target" / "wasm32-wasip1" / "release" / "noop_filter.wasm"
# The host calls of an allowed call, for the noop filter (wasm-probes' doc).
NOOP_ALLOWED_CALLS = "hold,headers,body,shared,time,metrics,set_property,response"


def build_noop_probe() -> Path:
    """Builds the noop filter if it is missing; returns its path."""
    if not NOOP_WASM.exists():
        subprocess.run(["cargo", "build", "-q", "--release", "--manifest-path", str(BENCH / "wasm-probes" / "Cargo.toml"),
                        "--target", "wasm32-wasip1", "--lib"], check=True)  # fmt: skip
    return NOOP_WASM

POLICY_PATH = BENCH / "policy.json"
WRK_POST = BENCH / "wrk" / "post.lua"

# -- bodies -------------------------------------------------------------------

# Mirrors engine/benches/decide.rs::FILLER: prose with JSON "\n" escapes.
FILLER = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\\n"

ALLOWED_TOOL = "search_docs"
REFUSED_TOOL = "delete_repository"


def body(size: int, tool: str = ALLOWED_TOOL, limit: int = 10) -> bytes:
    """A `tools/call` of exactly `size` bytes whose arguments carry padding.

    Same shape as engine/benches/decide.rs::body: `name` comes before the
    arguments (as every MCP client writes it), the padding is the last
    argument.
    """
    head = (
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' + tool + '",'
        '"arguments":{"query":"quarterly report owners","limit":' + str(limit) + ','
        '"index":"engineering","content":"'
    )
    tail = '"}}}'
    room = size - len(head) - len(tail)
    if room < 0:
        raise ValueError(f"size {size} too small for the body shape")
    pad = (FILLER * (room // len(FILLER) + 1))[:room]
    if pad.endswith("\\"):
        pad = pad[:-1] + " "
    out = (head + pad + tail).encode()
    assert len(out) == size, (len(out), size)
    json.loads(out)  # well-formed
    return out


UPSTREAM_RESULT = b'{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}'

REQUEST_HEADERS = {
    "Content-Type": "application/json",
    # Both types: the native MCP filter only parses POSTs that accept both.
    "Accept": "application/json, text/event-stream",
    "Authorization": "Bearer bench-token",
    "Mcp-Session-Id": "bench-session",
}

# -- Envoy configurations -----------------------------------------------------

RUNTIMES = {
    "v8": "envoy.wasm.runtime.v8",
    "wasmtime": "envoy.wasm.runtime.wasmtime",
    "wamr": "envoy.wasm.runtime.wamr",
}

def _without_wasm(config: dict, replacement: list[dict]) -> dict:
    """`config` with its Wasm filter replaced by `replacement` (the router stays last)."""
    hcm = envoy_config.http_connection_manager(config)
    hcm["http_filters"] = [
        *replacement,
        *[f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.wasm"],
    ]
    return config


def _native_filters(allowed_tools: list[str]) -> list[dict]:
    """envoy.filters.http.mcp + rbac: the same allow-list as the policy
    (calls to any other tool get 403, other methods pass).

    Envoy 1.40's MCP filter writes its dynamic metadata under its own name,
    `envoy.filters.http.mcp` (the docs' example still says `mcp_proxy`, which
    matches nothing in 1.40: every call would pass).
    """

    def metadata(path: list[str], value: dict) -> dict:
        return {
            "sourced_metadata": {
                "metadata_matcher": {"filter": "envoy.filters.http.mcp", "path": [{"key": k} for k in path], "value": value}
            }
        }

    return [
        {
            "name": "envoy.filters.http.mcp",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp",
                "traffic_mode": "PASS_THROUGH",
                # Same bound as the filter's settings.max_body_bytes (Envoy's default is 8 KiB).
                "max_request_body_size": 1048576,
            },
        },
        {
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {
                    "action": "ALLOW",
                    "policies": {
                        "non-tool-calls": {
                            "permissions": [{"not_rule": metadata(["method"], {"string_match": {"exact": "tools/call"}})}],
                            "principals": [{"any": True}],
                        },
                        "listed-tools": {
                            "permissions": [
                                metadata(
                                    ["params", "name"],
                                    {"or_match": {"value_matchers": [{"string_match": {"exact": t}} for t in allowed_tools]}},
                                )
                            ],
                            "principals": [{"any": True}],
                        },
                    },
                },
            },
        },
    ]


def _bootstrap(upstream_port: int, wasm_path: Path | None, policy_text: str, runtime: str, hold: bool) -> dict:
    return envoy_config.bootstrap(
        policy_text,
        listen_port=0,
        admin_port=0,
        upstream_port=upstream_port,
        wasm_path=str(wasm_path or REPO / "dist" / "mcp_policy.wasm"),
        runtime=RUNTIMES[runtime],
        allow_on_headers_stop_iteration=True if hold else None,
        vm_settings={"header_mode": "hold"} if hold else None,
    )


def proxy_config(
    kind: str,
    *,
    upstream_port: int,
    wasm_path: Path | None = None,
    policy: str | None = None,
    runtime: str = "v8",
    header_mode: str = "hold",
) -> str:
    """Bootstrap for one benchmarked proxy.

    kind: "passthrough", "buffer" (Envoy's buffer filter alone: the floor
    for any filter that must read the whole body), "wasm" or "native".
    header_mode "hold": vm_config settings {"header_mode":"hold"} and
    allow_on_headers_stop_iteration: true (as envoy/envoy.yaml);
    "stream": neither (the filter's default, any Envoy).
    """
    policy_text = policy if policy is not None else POLICY_PATH.read_text()
    config = _bootstrap(upstream_port, wasm_path, policy_text, runtime, header_mode == "hold")
    header = f"rendered by bench/harness.py: {kind}"
    if kind == "wasm":
        return envoy_config.dump(config, header)
    if kind == "passthrough":
        return envoy_config.dump(_without_wasm(config, []), header)
    if kind == "buffer":
        return envoy_config.dump(_without_wasm(config, [_buffer_filter(1048576)]), header)
    if kind == "native":
        policy_doc = json.loads(policy_text)
        allowed = [
            name
            for name, rule in policy_doc.get("tools", {}).items()
            if name != "*" and rule.get("action", "allow") != "deny"
        ]
        return envoy_config.dump(_without_wasm(config, _native_filters(allowed)), header)
    raise ValueError(kind)


def _buffer_filter(max_bytes: int) -> dict:
    return {
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": max_bytes,
        },
    }


def upstream_config() -> str:
    """A fast upstream: Envoy reads the whole request, answers a JSON-RPC result."""
    config = _bootstrap(0, None, POLICY_PATH.read_text(), "v8", False)
    hcm = envoy_config.http_connection_manager(config)
    hcm["stat_prefix"] = "upstream"
    del hcm["access_log"]
    hcm["route_config"]["virtual_hosts"][0]["routes"] = [
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": UPSTREAM_RESULT.decode()}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}],
        }
    ]
    # Read each request body to its end before answering: a reply sent
    # mid-body would make Envoy close the HTTP/1.1 connection.
    config["static_resources"]["clusters"] = []
    return envoy_config.dump(_without_wasm(config, [_buffer_filter(4194304)]), "rendered by bench/harness.py: upstream")


# -- processes ----------------------------------------------------------------


def envoy_bin() -> str:
    return os.environ.get("ENVOY_BIN") or str(REPO / ".venv" / "bin" / "envoy")


def envoy_version() -> str:
    out = subprocess.run([envoy_bin(), "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"version: (\S+)", out)
    return m.group(1) if m else out.strip()


class EnvoyStartError(RuntimeError):
    pass


@dataclass
class Envoy:
    """One Envoy process on ports chosen by the kernel."""

    name: str
    config: str
    workdir: Path
    concurrency: int = 1
    cpus: str | None = None  # taskset CPU list, e.g. "1"
    log_level: str = "info"
    process: subprocess.Popen | None = None
    port: int = 0
    admin_port: int = 0
    extra_args: list[str] = field(default_factory=list)
    # A command put in front of envoy (e.g. valgrind); it must exec or run
    # envoy as the child's own pid for `pid`/`cpu_seconds` to mean Envoy.
    prefix: list[str] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> "Envoy":
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "envoy.yaml"
        cfg.write_text(self.config)
        addr = self.workdir / "admin.address"
        addr.unlink(missing_ok=True)
        cmd = [
            envoy_bin(), "-c", str(cfg),
            "--concurrency", str(self.concurrency),
            "--disable-hot-restart",
            "--admin-address-path", str(addr),
            "--log-level", self.log_level,
            *self.extra_args,
        ]  # fmt: skip
        cmd = [*self.prefix, *cmd]
        if self.cpus is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", self.cpus, *cmd]
        self.log_path = self.workdir / "envoy.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EnvoyStartError(f"{self.name}: envoy exited {self.process.returncode}:\n{self.log_tail()}")
            if self._probe(addr):
                return self
            time.sleep(0.05)
        self.stop()
        raise EnvoyStartError(f"{self.name}: not ready after {timeout}s:\n{self.log_tail()}")

    def _probe(self, addr: Path) -> bool:
        try:
            if not self.admin_port:
                text = addr.read_text().strip()
                if not text:
                    return False
                self.admin_port = int(text.rsplit(":", 1)[1])
            if self.admin_get("/ready").strip() != "LIVE":
                return False
            listeners = json.loads(self.admin_get("/listeners?format=json"))
        except (OSError, ValueError, urllib.error.URLError):
            return False
        for status in listeners.get("listener_statuses", []):
            port = status.get("local_address", {}).get("socket_address", {}).get("port_value")
            if status.get("name") == "mcp_listener" and port:
                self.port = int(port)
                return True
        return False

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=10) as r:
            return r.read().decode()

    def stats(self, prefix: str) -> dict[str, int]:
        out = {}
        for line in self.admin_get("/stats?filter=" + prefix).splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def pid(self) -> int:
        # taskset execs envoy: the child's pid is Envoy's.
        assert self.process is not None
        return self.process.pid

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


# -- requests -----------------------------------------------------------------


def post(url: str, data: bytes, headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST", headers=headers or REQUEST_HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# -- wrk ----------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: installing it with apt-get (Debian package wrk)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], capture_output=True).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], capture_output=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is required (apt-get install wrk)")
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    url: str,
    body_file: Path,
    seconds: int,
    *,
    threads: int = 2,
    connections: int = 16,
    cpus: str | None = None,
    script: Path = WRK_POST,
    env: dict[str, str] | None = None,
    timeout_s: int = 10,
    until=None,
) -> WrkResult:
    """Runs wrk for `seconds`, or until `until()` returns true (checked every 50 ms)."""
    cmd = [
        ensure_wrk(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
        "--timeout", f"{timeout_s}s", "-s", str(script), url,
    ]  # fmt: skip
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    run_env = dict(os.environ, BENCH_BODY=str(body_file), **(env or {}))
    if until is None:
        out = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=seconds + 60)
        stdout, stderr, rc = out.stdout, out.stderr, out.returncode
    else:
        # wrk has no request count: poll `until` and stop wrk with SIGINT
        # (it then prints its summary as at the end of its duration).
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=run_env)
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline and not until():
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        rc = proc.returncode
    return _parse_wrk(stdout, stderr, rc)


def _parse_wrk(stdout: str, stderr: str, rc: int) -> WrkResult:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON ") :])
            return WrkResult(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                p50_ms=d["p50_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                non_2xx=d["status"],
                socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
            )
    raise RuntimeError(f"wrk gave no result (rc {rc}):\n{stdout}\n{stderr}")


# -- machine ------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = proc_meminfo_mib("MemTotal")
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": f"{mem} MiB",
        "kernel": os.uname().release,
    }


def proc_meminfo_mib(key: str) -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def wrk_version() -> str:
    out = subprocess.run([ensure_wrk(), "-v"], capture_output=True, text=True)
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip() if (out.stdout or out.stderr) else "wrk"
