"""The deployment artefacts under deploy/ are valid and consistent.

Run by `make deploy-check`, which first builds the module (dist/mcp_policy.wasm),
the CLI (MCP_POLICY_BIN, target/release/mcp-policy) and the OCI layout
(dist/oci). Every Envoy configuration found in the manifests goes through
`envoy --mode validate` with the real module: validation mode starts the
Wasm VM and runs the filter's on_configure, so an invalid embedded policy
fails here exactly as it would fail in a pod.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ENVOY = Path(os.environ.get("ENVOY_BIN", REPO / ".venv" / "bin" / "envoy"))
CLI = Path(os.environ.get("MCP_POLICY_BIN", REPO / "target" / "release" / "mcp-policy"))
WASM = REPO / "dist" / "mcp_policy.wasm"
OCI = REPO / "dist" / "oci"
SEED = REPO / "envoy" / "seed-policy.json"
EXAMPLES = sorted((REPO / "envoy" / "examples").glob("*.json"))
# Caller-identity examples (alternatives to the main WasmPlugin): checked on their own.
IDENTITY = DEPLOY / "istio" / "identity"
BUILD_LAYOUT = DEPLOY / "oci" / "build_layout.py"

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# Where the Kubernetes example mounts the module.
K8S_WASM = "/opt/mcp-policy/plugin.wasm"
DEFAULT_IMAGE = "oci://ghcr.io/your-org/mcp-policy:0.1.0"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
# The sample MCP server's port: the only inbound port the Istio variants check.
MCP_PORT = 8000
KUSTOMIZE = os.environ.get("KUSTOMIZE")


def is_partial(path: Path) -> bool:
    """Kustomize's own files and strategic-merge patches: not whole resources."""
    return path.name == "kustomization.yaml" or path.name.endswith("-patch.yaml")


def built(directory: str) -> list[dict]:
    """`kustomize build deploy/DIRECTORY` (KUSTOMIZE: the pinned binary)."""
    if not KUSTOMIZE:
        pytest.fail("KUSTOMIZE is not set: run `make deploy-check` (it installs the pinned kustomize)")
    r = subprocess.run(
        [KUSTOMIZE, "build", str(DEPLOY / directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0, f"kustomize build deploy/{directory}:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="session", autouse=True)
def prerequisites():
    missing = [str(p) for p in (ENVOY, CLI, WASM, OCI / "index.json") if not p.exists()]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make deploy-check` (it builds them)")


# ---------------------------------------------------------------- helpers


def load_all(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifest(kind: str) -> dict:
    found = [
        d
        for p in sorted(DEPLOY.rglob("*.yaml"))
        if not is_partial(p) and IDENTITY not in p.parents
        for d in load_all(p)
        if isinstance(d, dict) and d.get("kind") == kind
    ]
    assert len(found) == 1, f"expected one {kind} under deploy/, found {len(found)}"
    return found[0]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def cli_validate(policy_text: str, tmp_path: Path, name: str = "policy.json") -> None:
    f = tmp_path / name
    f.write_text(policy_text, encoding="utf-8")
    r = cli("validate", str(f))
    assert r.returncode == 0, f"mcp-policy validate refused the policy:\n{r.stdout}{r.stderr}"


def envoy_validate(config: str | dict, tmp_path: Path, name: str = "envoy.yaml") -> subprocess.CompletedProcess:
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(f)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_envoy_accepts(config: str | dict, tmp_path: Path, name: str = "envoy.yaml") -> None:
    r = envoy_validate(config, tmp_path, name)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "OK" in out, f"envoy --mode validate refused {name}:\n{out[-4000:]}"
    # The filter really ran on_configure on the policy.
    assert "mcp-policy: policy loaded" in out, out[-4000:]
    # Only current fields: Envoy warns about deprecated ones while loading.
    assert "deprecated" not in out.lower(), f"{name} uses a deprecated Envoy field:\n{out[-4000:]}"


def http_filters(bootstrap: dict) -> list[dict]:
    listener = bootstrap["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["@type"] == HCM_TYPE
    return hcm["http_filters"]


def wasm_config(bootstrap: dict) -> dict:
    filters = http_filters(bootstrap)
    wasm = [f for f in filters if f["typed_config"]["@type"] == WASM_TYPE]
    assert len(wasm) == 1
    assert filters[-1]["typed_config"]["@type"] == ROUTER_TYPE
    return wasm[0]["typed_config"]["config"]


def minimal_bootstrap(http_filter: dict) -> dict:
    """`mcp-policy render envoy`'s bootstrap with `http_filter` in place of its filter (before the router)."""
    r = cli("render", "envoy", str(SEED), "--wasm", str(WASM), "--admin-port", "0", "--listen", "127.0.0.1:0")
    assert r.returncode == 0, r.stderr
    bootstrap = yaml.safe_load(r.stdout)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [http_filter, *[f for f in hcm["http_filters"] if f["typed_config"]["@type"] == ROUTER_TYPE]]
    return bootstrap


def local_code() -> dict:
    return {"local": {"filename": str(WASM)}}


# ---------------------------------------------------------------- every manifest


def test_every_manifest_parses_as_yaml():
    files = [p for p in sorted(DEPLOY.rglob("*.yaml")) if not is_partial(p)]
    assert files, "no manifests under deploy/"
    kinds = []
    for path in files:
        docs = load_all(path)
        assert docs, f"{path}: empty"
        for d in docs:
            assert isinstance(d, dict) and d.get("apiVersion") and d.get("kind"), f"{path}: not a Kubernetes object"
            assert d.get("metadata", {}).get("name"), f"{path}: {d['kind']} without metadata.name"
            kinds.append(d["kind"])
    assert sorted(kinds) == sorted(
        ["ConfigMap", "Deployment", "Service", "WasmPlugin", "EnvoyFilter", "Gateway", "VirtualService"]
        + ["RequestAuthentication", "AuthorizationPolicy", "WasmPlugin", "PeerAuthentication", "WasmPlugin"]
    )


@pytest.mark.parametrize("name", ["jwt-roles.yaml", "mtls-principal.yaml"])
def test_identity_examples_hold_valid_policies_that_read_the_caller(name, tmp_path):
    docs = load_all(IDENTITY / name)
    plugins = [d for d in docs if d["kind"] == "WasmPlugin"]
    assert len(plugins) == 1
    spec = plugins[0]["spec"]
    # Where the main WasmPlugin runs: after Istio's AuthorizationPolicy, MCP port only.
    assert spec["phase"] == "STATS" and spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["match"] == [{"mode": "SERVER", "ports": [{"number": MCP_PORT}]}]
    config = spec["pluginConfig"]
    assert config["settings"]["require_caller"] is True
    assert "caller." in json.dumps(config)
    cli_validate(json.dumps(config), tmp_path)
    for d in docs:
        selector = d["spec"].get("selector", {}).get("matchLabels")
        assert selector == {"app": "mcp-server"}, f"{name}: {d['kind']} selects {selector}"


# ---------------------------------------------------------------- plain Kubernetes


def configmap() -> dict:
    cm = manifest("ConfigMap")
    assert set(cm["data"]) == {"envoy.yaml", "policy.json"}
    return cm


def test_configmap_envoy_yaml_passes_envoy_validate(tmp_path):
    text = configmap()["data"]["envoy.yaml"]
    assert f"filename: \"{K8S_WASM}\"" in text
    assert_envoy_accepts(text.replace(K8S_WASM, str(WASM)), tmp_path)


def test_configmap_policy_is_the_seed_policy_and_is_what_envoy_yaml_embeds(tmp_path):
    cm = configmap()
    policy = cm["data"]["policy.json"]
    assert policy == SEED.read_text(encoding="utf-8")
    config = wasm_config(yaml.safe_load(cm["data"]["envoy.yaml"]))
    assert config["configuration"]["@type"] == STRING_VALUE
    assert config["configuration"]["value"] == policy
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["fail_open"] is False
    assert json.loads(config["vm_config"]["configuration"]["value"]) == {"header_mode": "hold"}
    cli_validate(policy, tmp_path)


def test_configmap_envoy_yaml_is_the_cli_rendering_of_policy_json(tmp_path):
    cm = configmap()
    (tmp_path / "policy.json").write_text(cm["data"]["policy.json"], encoding="utf-8")
    r = cli(
        "render", "envoy", str(tmp_path / "policy.json"),
        "--wasm", K8S_WASM, "--upstream", "127.0.0.1:8000", "--listen", "0.0.0.0:10000",
    )
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout) == yaml.safe_load(cm["data"]["envoy.yaml"]), (
        "deploy/kubernetes/configmap.yaml envoy.yaml is stale: re-render it (see the comment at its top)"
    )


def test_deployment_service_and_configmap_fit_together():
    docs = built("kubernetes")
    cm = one(docs, "ConfigMap")
    assert cm == configmap()
    bootstrap = yaml.safe_load(cm["data"]["envoy.yaml"])
    deploy = one(docs, "Deployment")
    service = one(docs, "Service")
    pod = deploy["spec"]["template"]["spec"]
    # Its own Envoy: never a second (Istio) proxy in the pod.
    assert deploy["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()

    containers = {c["name"]: c for c in pod["containers"]}
    envoy = containers["envoy"]
    assert envoy["image"] == "envoyproxy/envoy:v1.40.0"
    assert envoy["args"][:2] == ["-c", "/etc/envoy/envoy.yaml"]
    mounts = {m["name"]: m["mountPath"] for m in envoy["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[next(n for n, p in mounts.items() if p == "/etc/envoy")]["configMap"]["name"] == cm["metadata"]["name"]
    wasm_volume = next(n for n, p in mounts.items() if K8S_WASM.startswith(p + "/"))
    # The init container fills the same volume with plugin.wasm.
    fetch, extract = pod["initContainers"]
    for init in (fetch, extract):
        assert any(m["name"] == wasm_volume and K8S_WASM.startswith(m["mountPath"] + "/") for m in init["volumeMounts"])
    assert fetch["args"][:2] == ["export", DEFAULT_IMAGE.removeprefix("oci://")]
    assert "plugin.wasm" in " ".join(extract["args"])
    # A private registry's credentials reach crane as a non-root user.
    assert {e["name"]: e["value"] for e in fetch["env"]}["DOCKER_CONFIG"] == "/var/run/secrets/mcp-policy-pull"
    assert "/root/" not in json.dumps(pod)
    # Pinned images only.
    for c in pod["initContainers"] + pod["containers"]:
        tag = c["image"].rpartition(":")[2]
        assert tag[:1] == "v" or tag[:1].isdigit(), f"{c['name']}: unpinned image {c['image']}"
    # The restricted Pod Security Standard.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in pod["initContainers"] + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], c["name"]
    # Idle SSE streams outlive Envoy's default 5-minute stream idle timeout.
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["stream_idle_timeout"] == "3600s"

    # Envoy's listener port is the container port the Service targets.
    listen = bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    port = next(p for p in envoy["ports"] if p["containerPort"] == listen)
    assert service["spec"]["ports"][0]["targetPort"] in (port["name"], listen)
    # Envoy's upstream is the MCP server container on loopback.
    endpoint = bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
    address = endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    server_env = {e["name"]: e["value"] for e in containers["mcp-server"]["env"]}
    assert address["address"] == "127.0.0.1" == server_env["HOST"]
    assert str(address["port_value"]) == server_env["PORT"]
    assert service["spec"]["ports"][0]["targetPort"] == "mcp", "the MCP server must only be reachable through Envoy"


# ---------------------------------------------------------------- Istio


def test_envoyfilter_patch_in_a_minimal_bootstrap_passes_envoy_validate(tmp_path):
    ef = manifest("EnvoyFilter")
    patches = ef["spec"]["configPatches"]
    ext, deny, http = patches
    assert [p["applyTo"] for p in patches] == ["EXTENSION_CONFIG", "HTTP_FILTER", "HTTP_FILTER"]

    assert ext["match"]["context"] == deny["match"]["context"] == http["match"]["context"] == "SIDECAR_INBOUND"
    assert ext["patch"]["operation"] == "ADD"
    # Every proxy first gets a deny-all before the router on the MCP port...
    assert deny["patch"]["operation"] == "INSERT_BEFORE"
    assert "proxy" not in deny["match"]
    assert deny["match"]["listener"]["portNumber"] == MCP_PORT
    assert deny["match"]["listener"]["filterChain"]["filter"]["name"] == "envoy.filters.network.http_connection_manager"
    assert deny["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == "envoy.filters.http.router"
    assert deny["patch"]["value"]["typed_config"] == {"@type": RBAC_TYPE, "rules": {}}
    # ...which the filter replaces on proxies >= 1.27 (the version gate).
    gate = ext["match"]["proxy"]["proxyVersion"]
    assert http["match"]["proxy"]["proxyVersion"] == gate
    assert http["patch"]["operation"] == "REPLACE"
    assert http["match"]["listener"]["portNumber"] == MCP_PORT
    assert http["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == deny["patch"]["value"]["name"]
    discovery = http["patch"]["value"]["config_discovery"]
    assert http["patch"]["value"]["name"] == ext["patch"]["value"]["name"] == deny["patch"]["value"]["name"]
    # The RBAC type too: istio-agent's deny-all when the module cannot be fetched.
    assert discovery["type_urls"] == [WASM_TYPE, RBAC_TYPE]
    assert discovery["config_source"]["initial_fetch_timeout"] == "0s"
    # Istio's proxy versions (ISTIO_VERSION) against the gate, as istiod matches them.
    gate_re = re.compile(gate)
    for version in ["1.27.0", "1.28.3", "1.29.6", "1.30.3", "1.31.0-beta.1", "1.100.0", "2.0.0", "10.1.0"]:
        assert gate_re.search(version), version
    for version in ["1.26.3", "1.9.0", "1.2.7", "0.27.0", "unknown", ""]:
        assert not gate_re.search(version), version
    # The deny-all and the filter, as Envoy gets them, are both accepted.
    deny_only = minimal_bootstrap(deny["patch"]["value"])
    r = envoy_validate(deny_only, tmp_path, "deny.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]

    typed = ext["patch"]["value"]["typed_config"]
    assert typed["@type"] == WASM_TYPE
    config = typed["config"]
    assert config["allow_on_headers_stop_iteration"] is True
    assert config["fail_open"] is False
    assert json.loads(config["vm_config"]["configuration"]["value"]) == {"header_mode": "hold"}
    assert config["vm_config"]["code"]["remote"]["http_uri"]["uri"] == DEFAULT_IMAGE

    # What Envoy gets once istio-agent has fetched the module: the same
    # filter with code.local pointing at the downloaded file.
    fetched = copy.deepcopy(typed)
    fetched["config"]["vm_config"]["code"] = local_code()
    assert_envoy_accepts(minimal_bootstrap({"name": http["patch"]["value"]["name"], "typed_config": fetched}), tmp_path)


def test_wasmplugin_fields_and_its_istio_translation_pass_envoy_validate(tmp_path):
    wp = manifest("WasmPlugin")
    spec = wp["spec"]
    assert wp["apiVersion"] == "extensions.istio.io/v1alpha1"
    assert spec["url"] == DEFAULT_IMAGE
    # After Istio's AuthorizationPolicy, like the EnvoyFilter (before the router).
    assert spec["phase"] == "STATS"
    assert spec["failStrategy"] == "FAIL_CLOSE"
    assert spec["selector"]["matchLabels"] == {"app": "mcp-server"}
    assert spec["match"] == [{"mode": "SERVER", "ports": [{"number": MCP_PORT}]}]
    assert spec["pluginConfig"] == json.loads(SEED.read_text(encoding="utf-8"))

    # Istio hands pluginConfig to the filter as JSON, without
    # allow_on_headers_stop_iteration and without VM settings: the
    # filter's default header_mode "stream".
    plugin_json = json.dumps(spec["pluginConfig"])
    cli_validate(plugin_json, tmp_path)
    translated = {
        "name": "mcp-policy",
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": "mcp-policy",
                "root_id": spec["pluginName"],
                "fail_open": False,
                "vm_config": {"runtime": "envoy.wasm.runtime.v8", "code": local_code()},
                "configuration": {"@type": STRING_VALUE, "value": plugin_json},
            },
        },
    }
    assert_envoy_accepts(minimal_bootstrap(translated), tmp_path)


def test_istio_manifests_are_the_cli_rendering_of_the_seed_policy():
    for kind, only, path in [
        ("WasmPlugin", "wasmplugin", DEPLOY / "istio" / "wasmplugin" / "wasmplugin.yaml"),
        ("EnvoyFilter", "envoyfilter", DEPLOY / "istio" / "envoyfilter" / "envoyfilter.yaml"),
    ]:
        r = cli("render", "istio", str(SEED), "--only", only)
        assert r.returncode == 0, r.stderr
        rendered = list(yaml.safe_load_all(r.stdout))
        assert len(rendered) == 1 and rendered[0]["kind"] == kind
        assert load_all(path) == rendered, (
            f"{path.relative_to(REPO)} is stale: mcp-policy render istio envoy/seed-policy.json --only {only} > {path.relative_to(REPO)}"
        )


def test_envoyfilter_embeds_the_seed_policy_byte_for_byte(tmp_path):
    ef = manifest("EnvoyFilter")
    ext = next(p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG")
    value = ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
    assert value == SEED.read_text(encoding="utf-8")
    cli_validate(value, tmp_path)


# ---------------------------------------------------------------- mcp-policy render envoy


@pytest.mark.parametrize("policy", [SEED, *EXAMPLES], ids=lambda p: p.name)
def test_cli_render_envoy_passes_envoy_validate(policy, tmp_path):
    r = cli("render", "envoy", str(policy), "--wasm", str(WASM))
    assert r.returncode == 0, r.stderr
    config = wasm_config(yaml.safe_load(r.stdout))
    assert config["configuration"]["value"] == policy.read_text(encoding="utf-8")
    assert_envoy_accepts(r.stdout, tmp_path)


def test_cli_render_envoy_with_a_dns_upstream_and_a_hard_to_quote_policy(tmp_path):
    policy = (
        '{"version":"1","description":"quotes \\" backslash \\\\ newline \\n tab \\t '
        'yaml: # & * ! | > % @ ` non-ascii \u00e9\u2713\U0001f980 \\u2028",'
        '"default":"deny","tools":{"a b:c":{"action":"deny","reason":"it\'s \\"no\\""},"yes":{}}}'
    )
    src = tmp_path / "policy.json"
    src.write_text(policy, encoding="utf-8")
    r = cli("render", "envoy", str(src), "--wasm", str(WASM), "--upstream", "mcp.example.internal:8080")
    assert r.returncode == 0, r.stderr
    bootstrap = yaml.safe_load(r.stdout)
    assert wasm_config(bootstrap)["configuration"]["value"] == policy
    assert bootstrap["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    assert_envoy_accepts(r.stdout, tmp_path)


def test_envoy_validate_refuses_an_invalid_embedded_policy(tmp_path):
    """The check has teeth: the filter's own validation runs in Envoy."""
    text = configmap()["data"]["envoy.yaml"].replace(K8S_WASM, str(WASM))
    broken = text.replace('\\"default\\": \\"deny\\"', '\\"default\\": \\"maybe\\"')
    assert broken != text
    r = envoy_validate(broken, tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert 'policy.default: got "maybe", expected one of "allow", "deny"' in out, out[-3000:]


# ---------------------------------------------------------------- OCI image layout


def blob(digest: str) -> bytes:
    algo, _, hexd = digest.partition(":")
    assert algo == "sha256"
    data = (OCI / "blobs" / "sha256" / hexd).read_bytes()
    assert hashlib.sha256(data).hexdigest() == hexd, f"blob {digest} does not match its digest"
    return data


def check_descriptor(desc: dict) -> bytes:
    data = blob(desc["digest"])
    assert len(data) == desc["size"], f"{desc['digest']}: size {len(data)} != {desc['size']}"
    return data


def test_oci_layout_is_well_formed_and_holds_the_module():
    assert json.loads((OCI / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((OCI / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert len(index["manifests"]) == 1
    mdesc = index["manifests"][0]
    assert mdesc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    with open(REPO / "Cargo.toml", "rb") as f:
        version = tomllib.load(f)["workspace"]["package"]["version"]
    assert mdesc["annotations"]["org.opencontainers.image.ref.name"] == version

    manifest_doc = json.loads(check_descriptor(mdesc))
    assert manifest_doc["schemaVersion"] == 2
    assert manifest_doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest_doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(check_descriptor(manifest_doc["config"]))
    # Istio's "compat" variant: exactly one tar+gzip layer with plugin.wasm.
    assert len(manifest_doc["layers"]) == 1
    ldesc = manifest_doc["layers"][0]
    assert ldesc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    layer = check_descriptor(ldesc)
    tar_bytes = gzip.decompress(layer)
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]}
    assert config["os"] and config["architecture"]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["plugin.wasm"]
        assert members[0].isfile()
        extracted = tar.extractfile(members[0])
        assert extracted is not None
        assert extracted.read() == WASM.read_bytes(), "plugin.wasm differs from dist/mcp_policy.wasm"

    # Nothing else in the blob store.
    stored = {p.name for p in (OCI / "blobs" / "sha256").iterdir()}
    referenced = {d["digest"].split(":")[1] for d in (mdesc, manifest_doc["config"], ldesc)}
    assert stored == referenced


def test_oci_layout_is_deterministic(tmp_path):
    out = tmp_path / "oci"
    r = subprocess.run(
        ["python3", str(BUILD_LAYOUT), "--wasm", str(WASM), "--out", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert r.returncode == 0, r.stderr
    rebuilt = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    current = {p.relative_to(OCI): p.read_bytes() for p in OCI.rglob("*") if p.is_file()}
    assert rebuilt == current
