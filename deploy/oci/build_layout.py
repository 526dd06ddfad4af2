#!/usr/bin/env python3
"""Build the mcp-policy Wasm image as an OCI image layout, without a container engine.

The image is what `docker build -f deploy/oci/Dockerfile dist/` would make
(`FROM scratch` + `COPY mcp_policy.wasm ./plugin.wasm`): one gzip-compressed
tar layer holding `plugin.wasm`. That is the "compat" variant of the Wasm
image specification, the layout Istio's agent accepts for
`WasmPlugin.url: oci://...` and for EnvoyFilter remote code.

Output (an OCI image layout, https://github.com/opencontainers/image-spec/blob/main/image-layout.md):

    OUT/oci-layout                      {"imageLayoutVersion": "1.0.0"}
    OUT/index.json                      one manifest, tagged TAG
    OUT/blobs/sha256/<manifest>         application/vnd.oci.image.manifest.v1+json
    OUT/blobs/sha256/<config>           application/vnd.oci.image.config.v1+json
    OUT/blobs/sha256/<layer>            application/vnd.oci.image.layer.v1.tar+gzip

The output is deterministic: fixed mtimes (SOURCE_DATE_EPOCH, default 0),
owner 0:0, no timestamps in the config, gzip header mtime 0, sorted JSON
keys. The same module gives the same digests on every run (with the same
zlib build).

Push it with any OCI tool, e.g.:

    skopeo copy oci:dist/oci:0.1.0 docker://ghcr.io/your-org/mcp-policy:0.1.0
    oras cp --from-oci-layout dist/oci:0.1.0 ghcr.io/your-org/mcp-policy:0.1.0
    crane push dist/oci ghcr.io/your-org/mcp-policy:0.1.0

Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
# The file name Istio's agent looks for in the layer.
PLUGIN_NAME = "plugin.wasm"


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def workspace_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        cargo = tomllib.load(f)
    return cargo["workspace"]["package"]["version"]


def layer_tar(wasm: bytes, mtime: int) -> bytes:
    """A tar with the single file plugin.wasm, as `COPY ... ./plugin.wasm` in / makes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_NAME)
        info.size = len(wasm)
        info.mtime = mtime
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def build(wasm: bytes, tag: str, mtime: int = 0, platform: str = "linux/amd64") -> dict[str, bytes]:
    """Every file of the layout, by relative path."""
    os_name, _, arch = platform.partition("/")
    tar = layer_tar(wasm, mtime)
    layer = gzip.compress(tar, compresslevel=9, mtime=0)
    config = canonical_json(
        {
            "architecture": arch,
            "os": os_name,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
            "history": [{"created_by": f"COPY mcp_policy.wasm ./{PLUGIN_NAME}"}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_TYPE, "digest": sha256(layer), "size": len(layer)}],
            "annotations": {
                "org.opencontainers.image.title": "mcp-policy",
                "org.opencontainers.image.description": "Envoy proxy-wasm filter enforcing MCP tool policies",
                "org.opencontainers.image.version": tag,
            },
        }
    )
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
    }
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = blob
    return files


def write(out: Path, files: dict[str, bytes]) -> None:
    """Replaces `out` by the layout (refuses to delete a folder that is not one)."""
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "oci-layout").is_file()):
            raise SystemExit(f"{out} exists and is not an OCI layout; not replacing it")
        shutil.rmtree(out)
    for rel, data in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wasm", default=str(REPO / "dist" / "mcp_policy.wasm"), help="the module (default dist/mcp_policy.wasm)")
    parser.add_argument("--out", default=str(REPO / "dist" / "oci"), help="layout folder (default dist/oci)")
    parser.add_argument("--tag", default=None, help="tag (default: the workspace version in Cargo.toml)")
    parser.add_argument("--platform", default="linux/amd64", help="OS/arch recorded in the image config")
    args = parser.parse_args(argv)

    wasm_path = Path(args.wasm)
    try:
        wasm = wasm_path.read_bytes()
    except OSError as e:
        print(f"build_layout: cannot read {wasm_path}: {e} (run `make build` first)", file=sys.stderr)
        return 1
    if not wasm.startswith(b"\0asm"):
        print(f"build_layout: {wasm_path} is not a WebAssembly module", file=sys.stderr)
        return 1
    tag = args.tag or workspace_version()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    files = build(wasm, tag, mtime, args.platform)
    out = Path(args.out)
    write(out, files)
    manifest_digest = json.loads(files["index.json"])["manifests"][0]["digest"]
    print(f"oci: {out} ({tag}, manifest {manifest_digest})")
    print(f"  push: skopeo copy oci:{out}:{tag} docker://ghcr.io/your-org/mcp-policy:{tag}")
    print(f"  pin:  oci://ghcr.io/your-org/mcp-policy@{manifest_digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
