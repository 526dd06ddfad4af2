"""Redis and the rate limit service (envoyproxy/ratelimit) as test processes.

Both bind 127.0.0.1 only. Redis runs with persistence off (`--save ''
--appendonly no`) in its own directory. The rate limit service is
envoyproxy/ratelimit's `service_cmd` (`make ratelimit` builds the pinned
version into ~/.cache/mcp-policy/go; `$RATELIMIT_BIN` names the binary),
configured only through its environment: a runtime directory in the test's
workdir holding the configuration files (`RATELIMIT_CONFIGS` below, the one
docs/rate-limit-service.md documents for production), Redis over TCP, no statsd, and free
ports for gRPC, HTTP and debug (it cannot report a kernel-chosen port, so
the ports are picked here just before it starts). Every process is stopped
by its own handle, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The production configuration (docs/rate-limit-service.md): the
# domain must exist for the service to honour the filter's `limit`
# override; it needs no rules of its own. `native` serves
# test_ratelimit_service.py's Envoy without the filter, whose descriptors
# carry no override: a rule of the service's own applies.
RATELIMIT_CONFIGS = {
    "mcp_policy.yaml": "domain: mcp_policy\n",
    "native.yaml": """\
domain: native
descriptors:
  - key: counter
    value: native
    descriptors:
      - key: scope_value
        rate_limit: { unit: hour, requests_per_unit: 3 }
""",
}
# The production settings; the rest is where this test instance listens.
RATELIMIT_ENV = {
    "USE_STATSD": "false",
    "LOG_LEVEL": "debug",
    "REDIS_SOCKET_TYPE": "tcp",
    "RUNTIME_SUBDIRECTORY": "ratelimit",
    "RUNTIME_WATCH_ROOT": "false",
    "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true",
}


def ratelimit_bin() -> Path | None:
    value = os.environ.get("RATELIMIT_BIN")
    return Path(value) if value else None


def redis_server_bin() -> str | None:
    return os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """One command over RESP; the raw reply (tests only look at simple ones)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = redis_server_bin()
        if binary is None:
            raise RuntimeError("redis-server not found: `make test-global` installs it (apt-get install redis-server)")
        command = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if redis_command(self.port, "PING").startswith(b"+PONG"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server not answering PING after {timeout}s:\n{self.log_tail()}")

    def flush(self) -> None:
        assert redis_command(self.port, "FLUSHALL").startswith(b"+OK")

    def stop(self) -> None:
        _stop(self.process)

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self.log_path, lines)


class RateLimitService:
    """envoyproxy/ratelimit on `redis_url`; `kill()` and `pause()` simulate a dead or hung service."""

    def __init__(self, workdir: Path, redis_url: str, name: str = "ratelimit", **env: str) -> None:
        self.workdir = workdir
        self.runtime = workdir / "runtime"
        config = self.runtime / RATELIMIT_ENV["RUNTIME_SUBDIRECTORY"] / "config"
        config.mkdir(parents=True, exist_ok=True)
        for file, text in RATELIMIT_CONFIGS.items():
            (config / file).write_text(text)
        self.redis_url = redis_url
        self.extra_env = env
        self.log_path = workdir / f"{name}.log"
        self.port = 0  # gRPC
        self.http_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        redis = self.redis_url.removeprefix("redis://")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            **RATELIMIT_ENV,
            "RUNTIME_ROOT": str(self.runtime),
            "REDIS_URL": redis,
            "HOST": "127.0.0.1",
            "PORT": str(self.http_port),
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.port),
            "DEBUG_HOST": "127.0.0.1",
            "DEBUG_PORT": str(free_port()),
            **self.extra_env,
        }

    def start(self, port: int | None = None, timeout: float = 20.0) -> RateLimitService:
        """Start on gRPC `port` (default: the port it had before, else a free one)."""
        binary = ratelimit_bin()
        if binary is None or not binary.exists():
            raise RuntimeError(
                f"envoyproxy/ratelimit not found ({binary}): run `make test-global` (it builds it with go install)"
            )
        port = self.port if port is None else port
        self.port = port or free_port()
        self.http_port = self.http_port or free_port()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(binary)], env=self.environment(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ratelimit exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._healthy() and self._grpc_listening():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ratelimit did not become healthy within {timeout}s:\n{self.log_tail()}")

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=1) as sock:
                sock.sendall(b"GET /healthcheck HTTP/1.0\r\nHost: x\r\n\r\n")
                return b" 200 " in sock.recv(64).split(b"\r\n", 1)[0]
        except OSError:
            return False

    def _grpc_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: connections reset, the port refuses from now on."""
        if self.running():
            assert self.process is not None
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        assert self.process is not None and self.running()
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        _stop(self.process)

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _tail(path: Path, lines: int) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
