"""Envoys for the global-limit tests.

`FilterEnvoy` is the e2e suite's Envoy (tests/e2e/envoy_process.py: the
bootstrap `mcp-policy render envoy` writes) plus one static cluster for the
rate limit service, which speaks gRPC and so needs HTTP/2 upstream.

`NativeRateLimitEnvoy` swaps the mcp-policy filter for Envoy's own
`envoy.filters.http.ratelimit`, which asks the service, proving the service speaks
the real API to Envoy's gRPC client (and that Envoy reads back its
DescriptorStatus fields, through the X-RateLimit headers).

`Replicas` starts FilterEnvoys in pairs (two replicas of one policy);
`probe_filter_support` skips a test when the built module refuses a policy
with `rate_limit_service` (a filter without the feature).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from envoy_process import WASM, Envoy, EnvoyOptions, EnvoyStartError  # noqa: E402
from recording_upstream import RecordingUpstream  # noqa: E402
from services import RateLimitService  # noqa: E402

import envoy_config  # noqa: E402  (demo/, put on sys.path by envoy_process)


# Every Envoy, Redis and rate limit service the suite started: conftest.py
# attaches their log tails to failing tests' reports.
STARTED: list[Any] = []


class FilterEnvoy(Envoy):
    """The e2e Envoy with an extra `rls` cluster pointing at the rate limit service."""

    def __init__(
        self, policy: str | dict, options: EnvoyOptions, workdir: Path, *, rls_port: int, rls_cluster: str = "rls"
    ) -> None:
        super().__init__(policy, options, workdir)
        self.rls_port = rls_port
        self.rls_cluster = rls_cluster

    def bootstrap(self) -> str:
        config = self.bootstrap_config()
        config["static_resources"]["clusters"].append(
            envoy_config.static_cluster(self.rls_cluster, self.rls_port, connect_timeout="0.25s", http2=True)
        )
        return envoy_config.dump(config, header="rendered by tests/global/global_envoy.py (+ the rate limit service's cluster)")


class NativeRateLimitEnvoy(Envoy):
    """Envoy with only its own ratelimit filter, asking the service per request.

    Descriptor per request: [("counter", "native"), ("scope_value", <x-grant
    header>)], no limit override (Envoy's route actions cannot build one from
    a header), so the service's own rule for domain `native` applies
    (services.RATELIMIT_CONFIGS). Answers carry X-RateLimit-* headers built
    from the service's DescriptorStatus.
    """

    def __init__(self, workdir: Path, *, rls_port: int, upstream_port: int, domain: str = "native") -> None:
        super().__init__("", EnvoyOptions(upstream_port=upstream_port), workdir)
        self.rls_port = rls_port
        self.domain = domain

    def bootstrap(self) -> str:
        """The rendered bootstrap with the Wasm filter replaced by Envoy's ratelimit filter."""
        config = self.bootstrap_config()
        hcm = envoy_config.http_connection_manager(config)
        hcm["stat_prefix"] = "native"
        hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["rate_limits"] = [
            {
                "actions": [
                    {"generic_key": {"descriptor_key": "counter", "descriptor_value": "native"}},
                    {"request_headers": {"header_name": "x-grant", "descriptor_key": "scope_value"}},
                ]
            }
        ]
        hcm["http_filters"] = [
            {
                "name": "envoy.filters.http.ratelimit",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                    "domain": self.domain,
                    "failure_mode_deny": True,
                    "timeout": "1s",
                    "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
                    "rate_limit_service": {
                        "transport_api_version": "V3",
                        "grpc_service": {"envoy_grpc": {"cluster_name": "rls"}},
                    },
                },
            },
            *[f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.router"],
        ]
        config["static_resources"]["clusters"].append(
            envoy_config.static_cluster("rls", self.rls_port, connect_timeout="0.25s", http2=True)
        )
        return envoy_config.dump(config, header="rendered by tests/global/global_envoy.py: Envoy's own ratelimit filter")


class Replicas:
    """Pairs of filter Envoys per policy, started lazily, stopped at session end."""

    def __init__(self, upstream: RecordingUpstream, rls: RateLimitService, workdir: Path) -> None:
        self.upstream = upstream
        self.rls = rls
        self.workdir = workdir
        self._pairs: dict[str, list[FilterEnvoy]] = {}
        self._started = 0

    def start_one(self, policy: dict | str, label: str) -> FilterEnvoy:
        if not WASM.exists():
            pytest.fail(f"{WASM} does not exist: run `make build` first", pytrace=False)
        self._started += 1
        envoy = FilterEnvoy(
            policy,
            EnvoyOptions(upstream_port=self.upstream.port),
            self.workdir / f"envoy-{self._started:02d}-{label}",
            rls_port=self.rls.port,
        )
        STARTED.append(envoy)
        return envoy.start()

    def pair(self, name: str, policy: dict) -> list[FilterEnvoy]:
        if name not in self._pairs:
            self._pairs[name] = [self.start_one(policy, f"{name}-{i}") for i in ("a", "b")]
        return self._pairs[name]

    def close(self) -> None:
        for pair in self._pairs.values():
            for envoy in pair:
                envoy.stop()


def probe_filter_support(replicas: Replicas, policy: dict) -> None:
    """Skip the caller unless the built filter accepts a policy with `rate_limit_service`."""
    try:
        envoy = replicas.start_one(policy, "probe")
    except EnvoyStartError as error:
        text = str(error)
        if "invalid policy" in text or "configuration refused" in text or "policy rejected" in text:
            problems = [line for line in text.splitlines() if "invalid policy" in line][:4]
            pytest.skip("the filter does not support rate_limit_service yet: " + " | ".join(problems))
        raise
    envoy.stop()
