"""The committed configuration files stay what they claim to be.

- envoy/seed-policy.json is the reference seed policy, byte for byte (CI
  clones only the repository, so it keeps a copy).
- envoy/envoy.yaml is the template's rendering of it (no hand drift), holds
  the seed policy verbatim, and Envoy itself accepts it (`--mode validate`
  loads the module and runs the filter's configuration check too).
"""

from __future__ import annotations

import json
import subprocess

import pytest

import envoy_config
from envoy_process import REPO, envoy_bin

REFERENCE_SEED = REPO.parent / "shared" / "reference" / "seed-policy.json"
SEED_COPY = REPO / "envoy" / "seed-policy.json"
ENVOY_YAML = REPO / "envoy" / "envoy.yaml"
BUILT_WASM = REPO / "dist" / "mcp_policy.wasm"


def test_seed_policy_copy_is_byte_identical() -> None:
    if not REFERENCE_SEED.exists():
        pytest.skip(f"{REFERENCE_SEED} not present beside the repository")
    assert SEED_COPY.read_bytes() == REFERENCE_SEED.read_bytes()


def test_envoy_yaml_is_the_rendered_template() -> None:
    assert ENVOY_YAML.read_text(encoding="utf-8") == envoy_config.committed_config(), (
        "envoy/envoy.yaml differs from the template: run `python demo/envoy_config.py --write`"
    )


def test_seed_policy_is_embedded_verbatim() -> None:
    values = [line.split("value: ", 1)[1] for line in ENVOY_YAML.read_text(encoding="utf-8").splitlines()
              if line.strip().startswith("value: ")]  # fmt: skip
    decoded = [json.loads(value) for value in values]
    assert SEED_COPY.read_text(encoding="utf-8") in decoded, decoded
    assert json.dumps(envoy_config.COMMITTED_VM_SETTINGS, separators=(",", ":")) in decoded, decoded


def test_envoy_yaml_validates() -> None:
    """Run from the repository root, as documented (the module path is relative)."""
    if not BUILT_WASM.exists():
        pytest.fail(f"{BUILT_WASM} does not exist: run `make build` first", pytrace=False)
    result = subprocess.run(
        [envoy_bin(), "--mode", "validate", "-c", "envoy/envoy.yaml", "--disable-hot-restart"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stdout + result.stderr
