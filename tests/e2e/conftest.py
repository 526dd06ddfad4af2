"""Fixtures of the end-to-end suite: a real Envoy running dist/mcp_policy.wasm.

One recording upstream serves the whole session. Envoys are started on first
use, one per (policy, options), and shared by every test that asks for the
same one: a start costs about a second, a request a millisecond. Tests never
interfere because each request carries its own marker.

`mode` parametrizes the refusal tests over the two header modes:
"hold" (header_mode hold, allow_on_headers_stop_iteration: true) and
"stream" (header_mode stream, the Envoy field left out). MAIN-based policies
carry header_mode in their own settings; the seed policy stays verbatim and
gets "hold" from the VM settings, as envoy/envoy.yaml does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from envoy_process import WASM, Envoy, EnvoyOptions, envoy_bin, start_expecting_failure  # noqa: E402
from policies import MAIN, SEED_POLICY_TEXT, SEED_RATE_LIMIT, with_settings  # noqa: E402
from policy_proxy import PolicyProxy  # noqa: E402
from recording_upstream import RecordingUpstream  # noqa: E402

MODES = ["stream", "hold"]
_LOG_DIRS: list[Path] = []


class EnvoyPool:
    """Envoys by configuration, started lazily and stopped at session end."""

    def __init__(self, upstream: RecordingUpstream, workdir: Path) -> None:
        self.upstream = upstream
        self.workdir = workdir
        self._envoys: dict[str, Envoy] = {}
        self._proxies: dict[str, PolicyProxy] = {}
        self._started = 0

    def envoy(self, policy: str | dict, **options: Any) -> Envoy:
        """A running Envoy with this policy (raw text or dict) and options."""
        options.setdefault("upstream_port", self.upstream.port)
        key = json.dumps([policy, sorted((k, str(v)) for k, v in options.items())], sort_keys=True)
        envoy = self._envoys.get(key)
        if envoy is not None and envoy.vm_crashes():
            # An earlier test crashed its filter VM (and failed for it): start
            # afresh so the crash does not fail every later test as well.
            envoy.stop()
            for proxy_key, proxy in list(self._proxies.items()):
                if proxy.envoy is envoy:
                    proxy.close()
                    del self._proxies[proxy_key]
            envoy = None
        if envoy is None:
            if not WASM.exists():
                pytest.fail(f"{WASM} does not exist: run `make build` first", pytrace=False)
            self._started += 1
            workdir = self.workdir / f"envoy-{self._started:02d}"
            envoy = self._envoys[key] = Envoy(policy, EnvoyOptions(**options), workdir).start()
        return envoy

    def proxy(
        self,
        policy: str | dict,
        mode: str,
        *,
        allowed_tool: str = "echo",
        allowed_arguments: dict[str, Any] | None = None,
        allowed_budget: int | None = None,
        **options: Any,
    ) -> PolicyProxy:
        """A PolicyProxy on the Envoy for (policy, mode); hold mode sets the Envoy field."""
        options.setdefault("allow_on_headers_stop_iteration", True if mode == "hold" else None)
        envoy = self.envoy(policy, **options)
        key = f"{id(envoy)}/{mode}/{allowed_tool}"
        if key not in self._proxies:
            self._proxies[key] = PolicyProxy(
                envoy, self.upstream, mode, allowed_tool, allowed_arguments or {"text": "still serving"},
                allowed_budget=allowed_budget,
            )  # fmt: skip
        return self._proxies[key]

    def start_failing(self, policy: str | dict, timeout: float = 30.0, **options: Any) -> tuple[int | None, bool, str]:
        """Start an Envoy that must refuse `policy`: (exit code, listener came up, log)."""
        if not WASM.exists():
            pytest.fail(f"{WASM} does not exist: run `make build` first", pytrace=False)
        options.setdefault("upstream_port", self.upstream.port)
        workdir = self.workdir / f"failing-{len(list(self.workdir.glob('failing-*'))):02d}"
        return start_expecting_failure(policy, EnvoyOptions(**options), workdir, timeout)

    def close(self) -> None:
        for proxy in self._proxies.values():
            proxy.close()
        for envoy in self._envoys.values():
            envoy.stop()


@pytest.fixture(autouse=True)
def _filter_vm_crash_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test during which a filter VM crashed, even if its own checks passed.

    With two workers, a crash on one can go unnoticed by requests that land
    on the other. Envoys handed to a test are crash-free (the pool restarts
    crashed ones), so a crash seen at teardown happened in this test.
    """
    yield
    for value in getattr(request.node, "funcargs", {}).values():
        envoy = value.envoy if isinstance(value, PolicyProxy) else value if isinstance(value, Envoy) else None
        if envoy is not None and envoy.vm_crashes():
            pytest.fail("the filter VM crashed during this test:\n" + "\n".join(envoy.vm_crashes()[:6]), pytrace=False)


def policy_for(policy: dict, mode: str) -> dict:
    """`policy` with settings.header_mode set to `mode`."""
    return with_settings(policy, header_mode=mode)


@pytest.fixture(scope="session")
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def envoys(upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyPool]:
    workdir = tmp_path_factory.mktemp("envoys")
    _LOG_DIRS.append(workdir)
    pool = EnvoyPool(upstream, workdir)
    yield pool
    pool.close()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def main_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    """MAIN policy (default deny, no rate limits) in both header modes."""
    return envoys.proxy(policy_for(MAIN, mode), mode)


@pytest.fixture
def seed_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    """The seed policy verbatim; hold mode comes from the VM settings, as in envoy/envoy.yaml."""
    return envoys.proxy(
        SEED_POLICY_TEXT, mode, allowed_tool="claude_code_session", allowed_arguments={"action": "list"},
        allowed_budget=SEED_RATE_LIMIT, vm_settings={"header_mode": "hold"} if mode == "hold" else None,
    )  # fmt: skip


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"envoy: {envoy_bin()}", f"filter module: {WASM} ({'present' if WASM.exists() else 'MISSING'})"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the tail of the Envoy log to a failing test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, PolicyProxy):
                report.sections.append(("envoy log (tail)", value.envoy.log_tail(30)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for directory in _LOG_DIRS:
        terminalreporter.write_line(f"envoy configs and logs: {directory}")
