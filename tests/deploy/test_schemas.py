"""deploy/ against Istio's CRD schemas and Kubernetes' schemas, strictly, and
the kustomize overlays as `kubectl apply -k` would send them.

Run by `make deploy-check`, which sets ISTIO_CRDS (istio.io/api's CRD file)
and KUSTOMIZE (the pinned kustomize). schemas.py holds the checker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import schemas  # noqa: E402
from test_manifests import DEPLOY, REPO, SEED, WASM, built, cli_validate, one  # noqa: E402

OVERLAYS = ["base", "kubernetes", "istio/wasmplugin", "istio/envoyfilter", "istio/ingress-gateway"]
SCHEMAS = Path(schemas.__file__)


def run_checker(*targets: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCHEMAS), *map(str, targets)], capture_output=True, text=True, timeout=300, check=False
    )


def test_every_manifest_and_every_kustomize_build_passes_the_strict_schemas():
    docs = schemas.documents(DEPLOY)
    kinds = {d.get("kind") for _, d in docs}
    # Istio and Kubernetes kinds are both really checked.
    assert {"WasmPlugin", "EnvoyFilter", "Gateway", "VirtualService", "Deployment", "Service", "ConfigMap"} <= kinds
    assert any(where.startswith("kustomize build") for where, _ in docs)
    problems = schemas.check([DEPLOY])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_builds(overlay):
    assert built(overlay)


@pytest.mark.parametrize(
    ("file", "break_it", "expected"),
    [
        # An unknown field in an Istio resource (a typo of a real one).
        ("istio/wasmplugin/wasmplugin.yaml", lambda d: d["spec"].update(failStrategyy="FAIL_CLOSE"), "failStrategyy"),
        # A wrong type in an Istio resource.
        (
            "istio/wasmplugin/wasmplugin.yaml",
            lambda d: d["spec"]["match"][0]["ports"][0].update(number="eight thousand"),
            ".spec.match[0].ports[0].number",
        ),
        # An enum value Istio does not know.
        ("istio/envoyfilter/envoyfilter.yaml", lambda d: d["spec"]["configPatches"][1]["patch"].update(operation="INSERT"), "INSERT"),
        (
            "istio/ingress-gateway/gateway.yaml",
            lambda d: d["spec"]["servers"][0]["port"].update(number="80"),
            ".spec.servers[0].port.number",
        ),
        # Unknown field and wrong type in Kubernetes resources.
        (
            "base/mcp-server.yaml",
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always"),
            "imagePullPolicyy",
        ),
        ("base/mcp-server.yaml", lambda d: d["spec"].update(replicas="one"), ".spec.replicas"),
    ],
)
def test_deploy_check_fails_on_a_broken_copy(tmp_path, file, break_it, expected):
    copy_root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_root)
    path = copy_root / file
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    break_it(docs[0])
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")

    r = run_checker(copy_root)
    assert r.returncode == 1, r.stdout + r.stderr
    # The message names the file (or the kustomize build) and the place.
    assert str(path) in r.stderr and expected in r.stderr, r.stderr


def test_an_unknown_istio_kind_or_version_is_refused():
    problems = schemas.errors({"apiVersion": "extensions.istio.io/v1alpha9", "kind": "WasmPlugin", "metadata": {"name": "x"}})
    assert problems and "not a resource istio.io/api serves" in problems[0]


def test_envoyfilter_overlay_takes_the_policy_from_its_policy_json(tmp_path):
    """The ConfigMap-driven form: policy.json beside the overlay is what the
    built EnvoyFilter embeds, byte for byte; the ConfigMap is build-local."""
    overlay = DEPLOY / "istio" / "envoyfilter"
    policy = (overlay / "policy.json").read_text(encoding="utf-8")
    assert policy == SEED.read_text(encoding="utf-8")
    docs = built("istio/envoyfilter")
    assert not [d for d in docs if d["kind"] == "ConfigMap"], "the policy ConfigMap is build-local"
    ef = one(docs, "EnvoyFilter")
    value = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]
    assert value == policy

    # Another policy in a copy of the overlay ends up in the EnvoyFilter.
    copy_root = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_root)
    other = policy.replace('"max": 10', '"max": 5')
    assert other != policy
    cli_validate(other, tmp_path)
    (copy_root / "istio" / "envoyfilter" / "policy.json").write_text(other, encoding="utf-8")
    r = subprocess.run(
        [schemas.os.environ["KUSTOMIZE"], "build", str(copy_root / "istio" / "envoyfilter")],
        capture_output=True, text=True, timeout=120, check=True,
    )
    ef = one([d for d in yaml.safe_load_all(r.stdout) if d], "EnvoyFilter")
    assert ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]["configuration"]["value"] == other


def test_istio_overlays_run_the_sample_server_where_the_sidecar_reaches_it():
    for overlay in ("istio/wasmplugin", "istio/envoyfilter"):
        docs = built(overlay)
        deploy = one(docs, "Deployment")
        server = deploy["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in server["env"]}
        # Istio forwards inbound traffic to the pod IP, not loopback.
        assert env["HOST"] == "0.0.0.0"
        assert "mcp-policy-demo-server" in server["image"] and not server["image"].endswith(":latest")
        assert [p["containerPort"] for p in server["ports"]] == [int(env["PORT"])]
        assert "sidecar.istio.io/inject" not in json.dumps(deploy["spec"]["template"]["metadata"])


def test_sample_server_image_recipe_matches_the_demo_server():
    dockerfile = (DEPLOY / "mcp-server" / "Dockerfile").read_text(encoding="utf-8")
    for source in ("demo/claude_code_server.py", "demo/claude_code_catalog.py"):
        assert source in dockerfile and (REPO / source).exists()
    pinned = next(line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("mcp=="))
    assert f"pip install --no-cache-dir {pinned}" in dockerfile
    assert "\nUSER " in dockerfile and "USER root" not in dockerfile
    assert WASM.exists()
