"""Redis and the rate limit service (tools/rls-server) as test processes.

Both bind 127.0.0.1 only. Redis runs with persistence off (`--save ''
--appendonly no`) in its own directory; the service runs from
tools/rls-server/target/release/rls-server (`$RLS_SERVER_BIN` to use another
build) and is started on port 0 unless a port is given: it prints the port
it got, so nothing races for ports. Every process is stopped by its own
handle, never by name.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RLS_SERVER_DIR = REPO / "tools" / "rls-server"


def rls_server_bin() -> Path:
    return Path(os.environ.get("RLS_SERVER_BIN") or RLS_SERVER_DIR / "target" / "release" / "rls-server")


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


class RlsServer:
    """tools/rls-server; `kill()` and `pause()` simulate a dead or hung service."""

    def __init__(self, workdir: Path, redis_url: str, *extra_args: str, name: str = "rls") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis_url = redis_url
        self.extra_args = list(extra_args)
        self.log_path = workdir / f"{name}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int | None = None, timeout: float = 10.0) -> RlsServer:
        """Start on `port` (default: the port it had before, else any free one)."""
        binary = rls_server_bin()
        if not binary.exists():
            raise RuntimeError(f"{binary} does not exist: run `make test-global` (it builds tools/rls-server)")
        port = self.port if port is None else port
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [str(binary), "--port", str(port), "--redis", self.redis_url, "--verbose", *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rls-server exited with {self.process.returncode}:\n{self.log_tail()}")
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                found = re.search(rb"rls-server listening on [0-9.]+:(\d+)", log.read())
            if found:
                self.port = int(found.group(1))
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"rls-server did not start within {timeout}s:\n{self.log_tail()}")

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
