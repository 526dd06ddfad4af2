"""Fixtures of the global-limit suite: Redis, the rate limit service, Envoys.

One Redis (port picked here, persistence off) and one rate limit service
(envoyproxy/ratelimit with the production configuration, services.py)
serve the session; tests that kill or pause the service get it back running
on the same port (the Envoys' `rls` cluster points there) before the next
test.
Envoy replicas come in pairs per policy, started on first use, all in front
of one recording upstream. Tests keep their budgets apart with fresh grants
(Authorization credentials), so nothing needs resetting between tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

from envoy_process import WASM, Envoy, envoy_bin  # noqa: E402
from global_envoy import STARTED, Replicas  # noqa: E402
from recording_upstream import RecordingUpstream  # noqa: E402
from services import RateLimitService, RedisServer, ratelimit_bin, redis_server_bin  # noqa: E402

_WORKDIRS: list[Path] = []


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("global")
    _WORKDIRS.append(path)
    return path


@pytest.fixture(scope="session")
def redis(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis").start()
    STARTED.append(server)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rls_session(workdir: Path, redis: RedisServer) -> Iterator[RateLimitService]:
    server = RateLimitService(workdir / "ratelimit", redis.url).start()
    STARTED.append(server)
    yield server
    server.stop()


@pytest.fixture
def rls(rls_session: RateLimitService) -> Iterator[RateLimitService]:
    """The session's rate limit service, running; restarted after a test killed or paused it."""
    if not rls_session.running():
        rls_session.start()
    yield rls_session
    if rls_session.running():
        rls_session.resume()
    else:
        rls_session.start()


@pytest.fixture(scope="session")
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replicas(upstream: RecordingUpstream, rls_session: RateLimitService, workdir: Path) -> Iterator[Replicas]:
    pool = Replicas(upstream, rls_session, workdir)
    yield pool
    pool.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"envoy: {envoy_bin()}",
        f"filter module: {WASM} ({'present' if WASM.exists() else 'MISSING'})",
        f"envoyproxy/ratelimit: {ratelimit_bin() or 'MISSING ($RATELIMIT_BIN unset: run make test-global)'}",
        f"redis-server: {redis_server_bin() or 'MISSING'}",
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the tails of the service and Envoy logs to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for service in STARTED:
            if isinstance(service, RateLimitService):
                report.sections.append((f"ratelimit log (tail) {service.log_path}", service.log_tail(25)))
            elif isinstance(service, Envoy) and service.process is not None and service.process.poll() is None:
                report.sections.append((f"envoy log (tail) {service.log_path}", service.log_tail(15)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for directory in _WORKDIRS:
        terminalreporter.write_line(f"redis, ratelimit and envoy configs and logs: {directory}")
