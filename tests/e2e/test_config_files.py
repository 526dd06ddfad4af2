"""The committed configuration files stay what they claim to be.

- envoy/seed-policy.json is the reference seed policy, byte for byte (CI
  clones only the repository, so it keeps a copy).
- envoy/envoy.yaml is `mcp-policy render envoy`'s output for it (no hand
  drift), holds the seed policy verbatim, uses only current Envoy fields, and
  Envoy itself accepts it (`--mode validate` loads the module and runs the
  filter's configuration check too) without a deprecation warning.
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


def test_envoy_yaml_is_the_cli_rendering() -> None:
    assert ENVOY_YAML.read_text(encoding="utf-8") == envoy_config.committed_config(), (
        "envoy/envoy.yaml differs from `mcp-policy render envoy`: run `make cli && python demo/envoy_config.py --write`"
    )


def test_seed_policy_is_embedded_verbatim() -> None:
    values = [line.split("value: ", 1)[1] for line in ENVOY_YAML.read_text(encoding="utf-8").splitlines()
              if line.strip().startswith("value: ")]  # fmt: skip
    decoded = [json.loads(value) for value in values]
    assert SEED_COPY.read_text(encoding="utf-8") in decoded, decoded
    assert json.dumps(envoy_config.COMMITTED_VM_SETTINGS, separators=(",", ":")) in decoded, decoded


def _validate(config_text: str, tmp_path) -> str:
    path = tmp_path / "envoy.yaml"
    path.write_text(config_text, encoding="utf-8")
    result = subprocess.run(
        [envoy_bin(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "info"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "OK" in output, output
    return output


def test_envoy_yaml_validates_without_deprecation_warnings(tmp_path) -> None:
    """With the built module in place of the installed path it names."""
    if not BUILT_WASM.exists():
        pytest.fail(f"{BUILT_WASM} does not exist: run `make build` first", pytrace=False)
    text = ENVOY_YAML.read_text(encoding="utf-8")
    assert envoy_config.COMMITTED_WASM in text
    output = _validate(text.replace(envoy_config.COMMITTED_WASM, str(BUILT_WASM)), tmp_path)
    assert "deprecated" not in output.lower(), output


def test_test_and_demo_configs_use_no_deprecated_field(tmp_path) -> None:
    """What the harnesses write (JSON after a comment) loads as the CLI's YAML does."""
    if not BUILT_WASM.exists():
        pytest.fail(f"{BUILT_WASM} does not exist: run `make build` first", pytrace=False)
    text = envoy_config.render(
        SEED_COPY.read_text(encoding="utf-8"), listen_port=0, admin_port=0, wasm_path=BUILT_WASM,
        vm_settings={"header_mode": "hold"}, header="a test's bootstrap",
    )  # fmt: skip
    output = _validate(text, tmp_path)
    assert "deprecated" not in output.lower(), output
