"""Strict schema check of Kubernetes and Istio manifests (used by `make deploy-check`).

Istio resources are checked against the CRD schemas shipped in the
`istio.io/api` Go module (ISTIO_CRDS: its kubernetes/customresourcedefinitions.gen.yaml),
Kubernetes resources against the schemas the `kubernetes-validate` package
ships (strict variant). Strict means an unknown field anywhere is an error,
except under fields the schema itself leaves open
(`x-kubernetes-preserve-unknown-fields`, e.g. an EnvoyFilter patch value,
which deploy-check hands to `envoy --mode validate` instead). CEL rules
(`x-kubernetes-validations`) are not evaluated.

    python tests/deploy/schemas.py FILE_OR_DIR...     exit 1 on any error

A directory is every `*.yaml` under it plus, for every kustomization.yaml,
the output of `kustomize build` (KUSTOMIZE, when set); `*-patch.yaml` and
kustomization files themselves are partial documents and are skipped.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import jsonschema
import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

KUBERNETES_VERSION = "1.37.0"
ISTIO_GROUP_SUFFIX = ".istio.io"
# Kustomize's own files and strategic-merge patches are not resources.
PARTIAL = ("kustomization.yaml",)


def _strict(schema: object) -> object:
    """The CRD's OpenAPI v3 schema as a JSON Schema refusing unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    open_ended = schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
    if schema.get("type") == "object" and not open_ended:
        out["additionalProperties"] = False
    return out


@cache
def _istio_schemas() -> dict[tuple[str, str], dict]:
    path = os.environ.get("ISTIO_CRDS")
    if not path:
        raise RuntimeError("ISTIO_CRDS is not set: run through `make deploy-check` (it fetches istio.io/api)")
    schemas = {}
    with open(path, encoding="utf-8") as f:
        for crd in yaml.load_all(f, Loader=LOADER):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["properties"].update(
                    apiVersion={"const": f"{group}/{version['name']}"},
                    kind={"const": kind},
                    metadata={"type": "object"},
                )
                schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def _where(error: jsonschema.ValidationError) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path) or "."


def errors(doc: dict) -> list[str]:
    """Every schema violation of one resource, each naming its JSON path."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if not api_version or not kind:
        return ["missing apiVersion or kind"]
    group = api_version.rpartition("/")[0]
    if group.endswith(ISTIO_GROUP_SUFFIX):
        schema = _istio_schemas().get((api_version, kind))
        if schema is None:
            return [f"{api_version} {kind}: not a resource istio.io/api serves"]
        validator = jsonschema.Draft7Validator(schema)
        found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        return [f"{_where(e)}: {e.message}" for e in found]
    import kubernetes_validate  # noqa: PLC0415 (only needed for Kubernetes kinds)

    try:
        kubernetes_validate.validate(copy.deepcopy(doc), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{_where(e)}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{api_version} {kind}: no Kubernetes {KUBERNETES_VERSION} schema"]
    return []


def documents(target: Path) -> list[tuple[str, dict]]:
    """(where, resource) for every resource in a file or under a directory."""
    files = [target] if target.is_file() else sorted(target.rglob("*.yaml"))
    found: list[tuple[str, dict]] = []
    for f in files:
        if f.name in PARTIAL or f.name.endswith("-patch.yaml"):
            continue
        with open(f, encoding="utf-8") as fh:
            found += [(str(f), d) for d in yaml.load_all(fh, Loader=LOADER) if d]
    kustomize = os.environ.get("KUSTOMIZE")
    if kustomize and target.is_dir():
        for k in sorted(target.rglob("kustomization.yaml")):
            out = subprocess.run(
                [kustomize, "build", str(k.parent)], capture_output=True, text=True, timeout=120, check=False
            )
            if out.returncode != 0:
                found.append((f"kustomize build {k.parent}", {"kustomize-error": out.stderr.strip()}))
                continue
            found += [(f"kustomize build {k.parent}", d) for d in yaml.load_all(out.stdout, Loader=LOADER) if d]
    return found


def check(targets: list[Path]) -> list[str]:
    problems = []
    for target in targets:
        for where, doc in documents(target):
            if "kustomize-error" in doc:
                problems.append(f"{where}: {doc['kustomize-error']}")
                continue
            name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            problems += [f"{where}: {name} {e}" for e in errors(doc)]
    return problems


def main(argv: list[str]) -> int:
    problems = check([Path(a) for a in argv] or [Path("deploy")])
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
