"""Fixtures of the client suite: real MCP servers behind a real Envoy + the filter.

Servers are started once per test module (module-scoped, parametrized
fixtures: pytest runs all tests of one server before starting the next).
Envoys come from tests/e2e/envoy_process.py, one per (policy, server, header
mode), started on first use and stopped with the module.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))

import harness  # noqa: E402
from envoy_process import WASM, Envoy, EnvoyOptions, envoy_bin  # noqa: E402

MODES = ["stream", "hold"]


class EnvoyPool:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._envoys: dict[str, Envoy] = {}

    def get(self, policy: dict[str, Any], upstream_port: int, mode: str, **options: Any) -> Envoy:
        """Envoy with `policy` in front of `upstream_port`, in header mode `mode`."""
        key = json.dumps([policy, upstream_port, mode, sorted(options.items())], sort_keys=True, default=str)
        envoy = self._envoys.get(key)
        if envoy is not None and envoy.vm_crashes():
            envoy.stop()
            envoy = None
        if envoy is None:
            if not WASM.exists():
                pytest.fail(f"{WASM} does not exist: run `make build` first", pytrace=False)
            hold = mode == "hold"
            envoy_options = EnvoyOptions(
                upstream_port=upstream_port, allow_on_headers_stop_iteration=True if hold else None,
                vm_settings={"header_mode": mode}, **options,
            )  # fmt: skip
            workdir = self.workdir / f"envoy-{len(self._envoys):02d}-{mode}"
            envoy = self._envoys[key] = Envoy(policy, envoy_options, workdir).start()
        return envoy

    def close(self) -> None:
        for envoy in self._envoys.values():
            envoy.stop()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"envoy: {envoy_bin()}", f"filter module: {WASM}", f"mcp 2.x python: {harness.PY_MCP2}"]


@pytest.fixture(scope="session", autouse=True)
def _prerequisites() -> None:
    missing = harness.missing_prerequisites()
    if missing:
        pytest.fail("missing (run `make clients`): " + ", ".join(missing), pytrace=False)


@pytest.fixture(scope="module")
def envoys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnvoyPool]:
    pool = EnvoyPool(tmp_path_factory.mktemp("envoys"))
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


def start_server(kind: str, logs: Path) -> Iterator[int]:
    port = harness.free_port()
    command, env = harness.server_command(kind, port)
    with harness.serving(command, port, logs / f"{kind}-{port}.log", env) as ready:
        yield ready


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return request.param
