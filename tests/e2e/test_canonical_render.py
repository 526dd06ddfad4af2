"""`mcp-policy render --canonical` on the policies the end-to-end tests run.

The Rust tests (cli/tests/canonical.rs) cover the policy files and the unit
test corpora; this covers the Python side: every policy held at module level
in tests/e2e and tests/clients (alone or inside lists, tuples and dicts)
renders to a text that loads and renders to itself byte for byte.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import envoy_config

HERE = Path(__file__).resolve().parent
CLIENTS = HERE.parent / "clients"


def _policies(value: Any, seen: set[int]) -> list[dict]:
    if id(value) in seen:
        return []
    seen.add(id(value))
    if isinstance(value, dict):
        if value.get("version") == "1":
            return [value]
        return [p for v in value.values() for p in _policies(v, seen)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _policies(v, seen)]
    return []


def _module_policies() -> list[tuple[str, dict]]:
    found: list[tuple[str, dict]] = []
    seen: set[int] = set()
    for folder in (HERE, CLIENTS):
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
        for path in sorted(folder.glob("*.py")):
            if path.name in ("conftest.py", Path(__file__).name) or path.parent == CLIENTS and path.name.startswith("test_"):
                continue
            try:
                module = importlib.import_module(path.stem)
            except Exception:  # noqa: BLE001 - helpers needing optional packages
                continue
            for name, value in vars(module).items():
                for i, policy in enumerate(_policies(value, seen)):
                    found.append((f"{path.name}:{name}[{i}]", policy))
    return found


POLICIES = _module_policies()


def _canonical(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return subprocess.run(
        [str(envoy_config.cli_bin()), "render", "--canonical", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_scan_finds_the_suites_policies() -> None:
    assert len(POLICIES) >= 20, [name for name, _ in POLICIES]


@pytest.mark.parametrize(("origin", "policy"), POLICIES, ids=[name for name, _ in POLICIES])
def test_canonical_output_is_a_fixed_point(origin: str, policy: dict, tmp_path: Path) -> None:
    if not envoy_config.cli_bin().exists():
        pytest.fail("the CLI is not built: run `make cli`", pytrace=False)
    first = _canonical(tmp_path, "original.json", json.dumps(policy))
    if first.returncode != 0:
        # Policies the suite uses to show a refusal stay refused.
        assert "the filter would refuse this policy" in first.stderr, first.stderr
        return
    second = _canonical(tmp_path, "canonical.json", first.stdout)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout, origin
