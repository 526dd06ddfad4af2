"""Envoys for the global-limit tests.

`FilterEnvoy` is the e2e suite's Envoy (tests/e2e/envoy_process.py, the one
template demo/envoy_config.py renders) plus one static cluster for the rate
limit service: gRPC needs HTTP/2 to the upstream, set through
`typed_extension_protocol_options` (the cluster-level
`http2_protocol_options` field is deprecated). The cluster is appended to
the rendered bootstrap's `clusters:` list, which the template ends with.

`NativeRateLimitEnvoy` runs no mcp-policy filter at all: Envoy's own
`envoy.filters.http.ratelimit` asks the service, proving the service speaks
the real API to Envoy's gRPC client (and that Envoy reads back its
DescriptorStatus fields, through the X-RateLimit headers).

`Replicas` starts FilterEnvoys in pairs (two replicas of one policy);
`probe_filter_support` skips a test when the built module refuses a policy
with `rate_limit_service` (a filter without the feature).

(tests/e2e's `EnvoyOptions.extra_clusters` adds HTTP/1.1 clusters only; a
gRPC cluster needs the HTTP/2 protocol options, hence the own rendering.)
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


def rls_cluster_yaml(name: str, port: int, connect_timeout: str = "0.25s") -> str:
    """A static cluster `name` speaking cleartext HTTP/2 (gRPC) to 127.0.0.1:`port`."""
    return f"""\
  # The rate limit service (envoyproxy/ratelimit): gRPC, so HTTP/2 upstream.
  - name: {name}
    type: STATIC
    connect_timeout: {connect_timeout}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {{}}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {port} }}
"""


class FilterEnvoy(Envoy):
    """The e2e Envoy with an extra `rls` cluster pointing at the rate limit service."""

    def __init__(
        self, policy: str | dict, options: EnvoyOptions, workdir: Path, *, rls_port: int, rls_cluster: str = "rls"
    ) -> None:
        super().__init__(policy, options, workdir)
        self.rls_port = rls_port
        self.rls_cluster = rls_cluster

    def bootstrap(self) -> str:
        text = envoy_config.render(
            self.policy,
            listen_port=0,
            listen_address="127.0.0.1",
            admin_port=0,
            upstream_port=self.options.upstream_port,
            wasm_path=self.options.wasm_path,
            runtime=self.options.runtime,
            allow_on_headers_stop_iteration=self.options.allow_on_headers_stop_iteration,
            vm_settings=self.options.vm_settings,
            header="# rendered by tests/global/global_envoy.py (tests/e2e template + rls cluster)\n",
        )
        # The template ends with its `clusters:` list: append ours to it.
        assert text.rstrip().endswith("}") and "\n  clusters:\n" in text, "unexpected bootstrap layout"
        return text.rstrip("\n") + "\n" + rls_cluster_yaml(self.rls_cluster, self.rls_port)


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
        return f"""\
# rendered by tests/global/global_envoy.py: Envoy's own ratelimit filter
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
static_resources:
  listeners:
  - name: mcp_listener
    address:
      socket_address: {{ address: 127.0.0.1, port_value: 0 }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: native
          route_config:
            name: native
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route:
                  cluster: upstream
                  rate_limits:
                  - actions:
                    - generic_key: {{ descriptor_key: counter, descriptor_value: native }}
                    - request_headers: {{ header_name: x-grant, descriptor_key: scope_value }}
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: {self.domain}
              failure_mode_deny: true
              timeout: 1s
              enable_x_ratelimit_headers: DRAFT_VERSION_03
              rate_limit_service:
                transport_api_version: V3
                grpc_service:
                  envoy_grpc: {{ cluster_name: rls }}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {self.options.upstream_port} }}
{rls_cluster_yaml("rls", self.rls_port)}"""


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
