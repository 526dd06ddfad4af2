"""Envoy configurations for `make run`, the tests and the benchmarks.

The project renders Envoy configuration in one place: the command line's
`mcp-policy render envoy` (cli/src/render.rs), the command users run. This
module runs it and hands back the bootstrap as a dict; callers change only
what they need (a test's policy text, header-mode settings, extra clusters,
other HTTP filters) and write it with `dump()`. `envoy/envoy.yaml` is the
CLI's output byte for byte (tests/e2e/test_config_files.py); regenerate it
after changing the renderer with:

    python demo/envoy_config.py --write

The CLI validates the policy it renders. Tests must also hand Envoy
policies the filter refuses, so the bootstrap is rendered around the seed
policy and the policy text is put in afterwards (`set_policy`), exactly as
given. `$MCP_POLICY_BIN` selects another build of the CLI.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEED_POLICY = REPO / "envoy" / "seed-policy.json"
COMMITTED_CONFIG = REPO / "envoy" / "envoy.yaml"

DEFAULT_LISTEN_PORT = 10000
DEFAULT_ADMIN_PORT = 9901
DEFAULT_UPSTREAM_PORT = 8000
DEFAULT_WASM = "dist/mcp_policy.wasm"
DEFAULT_RUNTIME = "envoy.wasm.runtime.v8"
RUNTIME_PREFIX = "envoy.wasm.runtime."

# The committed config: the module where a host installs it (absolute, as
# the CLI writes every module path), the listener on loopback.
COMMITTED_WASM = "/opt/mcp-policy/plugin.wasm"
COMMITTED_ARGS = ("--wasm", COMMITTED_WASM, "--upstream", "127.0.0.1:8000", "--port", "10000")
# The committed config holds refused requests entirely (the upstream sees
# nothing of them); the seed policy itself stays verbatim.
COMMITTED_VM_SETTINGS = {"header_mode": "hold"}


def cli_bin() -> Path:
    """`$MCP_POLICY_BIN`, else the release build in this checkout (`make cli`)."""
    return Path(os.environ.get("MCP_POLICY_BIN") or REPO / "target" / "release" / "mcp-policy")


def cli_render(policy_file: Path, *args: str) -> str:
    """`mcp-policy render envoy POLICY_FILE ARGS...`, its output as text."""
    cli = cli_bin()
    if not cli.exists():
        raise FileNotFoundError(f"{cli} does not exist: run `make cli` first (it renders every Envoy config)")
    result = subprocess.run(
        [str(cli), "render", "envoy", str(policy_file), *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"mcp-policy render envoy {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


@functools.lru_cache(maxsize=64)
def _rendered(args: tuple[str, ...]) -> dict:
    return yaml.safe_load(cli_render(SEED_POLICY, *args))


def bootstrap(
    policy: str | dict,
    *,
    listen_port: int = DEFAULT_LISTEN_PORT,
    listen_address: str = "127.0.0.1",
    admin_port: int = DEFAULT_ADMIN_PORT,
    upstream_host: str = "127.0.0.1",
    upstream_port: int = DEFAULT_UPSTREAM_PORT,
    wasm_path: str | Path = DEFAULT_WASM,
    runtime: str = DEFAULT_RUNTIME,
    allow_on_headers_stop_iteration: bool | None = True,
    vm_settings: dict | None = None,
    fail_open: bool = False,
) -> dict:
    """The CLI's bootstrap for these options, as a fresh dict.

    `policy` is a dict (serialised compactly) or the exact text handed to the
    filter (tests feed it malformed or oddly formatted JSON).
    `allow_on_headers_stop_iteration=None` leaves the field out (Envoy's
    default, false: only header_mode "stream" works). `vm_settings` are the
    deployment-side filter settings (vm_config.configuration); None leaves
    them out (the filter's defaults).
    """
    listen = f"[{listen_address}]" if ":" in listen_address else listen_address
    args = (
        "--listen", f"{listen}:{listen_port}",
        "--admin-port", str(admin_port),
        # The CLI refuses port 0 upstream (a user's mistake); tests without
        # an upstream ask for it, so it is set below.
        "--upstream", f"{upstream_host}:{upstream_port or DEFAULT_UPSTREAM_PORT}",
        "--wasm", str(wasm_path),
        "--runtime", runtime.removeprefix(RUNTIME_PREFIX),
    )  # fmt: skip
    config = copy.deepcopy(_rendered(args))
    if not upstream_port:
        endpoint_address(cluster(config, "mcp_upstream"))["port_value"] = 0
    set_policy(config, policy)
    wasm = wasm_config(config)
    if vm_settings is None:
        del wasm["vm_config"]["configuration"]
    else:
        wasm["vm_config"]["configuration"]["value"] = json.dumps(vm_settings, separators=(",", ":"))
    if allow_on_headers_stop_iteration is None:
        del wasm["allow_on_headers_stop_iteration"]
    else:
        wasm["allow_on_headers_stop_iteration"] = allow_on_headers_stop_iteration
    wasm["fail_open"] = fail_open
    return config


# -- parts of a rendered bootstrap ----------------------------------------------


def http_connection_manager(config: dict) -> dict:
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def http_filters(config: dict) -> list[dict]:
    return http_connection_manager(config)["http_filters"]


def wasm_config(config: dict) -> dict:
    """The Wasm filter's `config` (vm_config, configuration, flags)."""
    (wasm,) = [f for f in http_filters(config) if f["name"] == "envoy.filters.http.wasm"]
    return wasm["typed_config"]["config"]


def set_policy(config: dict, policy: str | dict) -> None:
    text = policy if isinstance(policy, str) else json.dumps(policy, separators=(",", ":"))
    wasm_config(config)["configuration"]["value"] = text


def cluster(config: dict, name: str) -> dict:
    (found,) = [c for c in config["static_resources"]["clusters"] if c["name"] == name]
    return found


def endpoint_address(cluster_config: dict) -> dict:
    return cluster_config["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]


def static_cluster(name: str, port: int, *, connect_timeout: str = "1s", http2: bool = False) -> dict:
    """A cluster of one 127.0.0.1 endpoint; `http2` for gRPC services."""
    out: dict = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }
    if http2:
        # The cluster-level http2_protocol_options field is deprecated.
        out["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return out


def with_extra_clusters(config: dict, clusters: tuple[tuple[str, int], ...]) -> dict:
    """`config` with a static HTTP/1.1 cluster per (name, port) added."""
    config["static_resources"]["clusters"].extend(static_cluster(name, port) for name, port in clusters)
    return config


# -- writing ----------------------------------------------------------------------

# Characters JSON leaves raw that YAML refuses in a stream or (YAML 1.1)
# reads as line breaks; written as \\uXXXX, which both decode (as the CLI's
# cli/src/quote.rs does).
_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def dump(config: dict, header: str = "") -> str:
    """The bootstrap as Envoy reads it: JSON (a subset of YAML) after `header` comment lines.

    Non-ASCII text stays raw UTF-8: escapes of astral characters as
    surrogate pairs are where YAML readers differ.
    """
    text = json.dumps(config, indent=2, ensure_ascii=False)
    text = _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + text + "\n"


def render(policy: str | dict, *, header: str = "", **options) -> str:
    """`dump(bootstrap(policy, **options), header)`."""
    return dump(bootstrap(policy, **options), header)


def committed_config() -> str:
    """The content `envoy/envoy.yaml` must have: the CLI's rendering of the seed policy."""
    return cli_render(SEED_POLICY.relative_to(REPO), *COMMITTED_ARGS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {COMMITTED_CONFIG.relative_to(REPO)}")
    args = parser.parse_args(argv)
    text = committed_config()
    if args.write:
        COMMITTED_CONFIG.write_text(text, encoding="utf-8")
        print(f"wrote {COMMITTED_CONFIG}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
