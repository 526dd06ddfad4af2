//! A proxy-wasm HTTP filter that does nothing by default: every callback
//! continues. Envoy + this module, minus Envoy passthrough, is the cost any
//! Wasm filter pays per request (VM calls for context create, headers, body,
//! response, log, done) before doing any work.
//!
//! Its plugin configuration is a comma-separated list of the host calls the
//! real filter makes per request, so each can be timed on its own
//! (bench/profile.py, part 5):
//!
//! - `hold`: pause the request headers until the body has ended (header_mode
//!   "hold"; needs `allow_on_headers_stop_iteration: true`)
//! - `headers`: read the 7 request headers the filter reads
//! - `property`: read the `source.address` property
//! - `body`: buffer the body and copy it into the VM (`get_buffer`)
//! - `shared`: 2 shared-data reads + 2 CAS writes (two rate-limit counters)
//! - `time`: read the clock (twice, as two limits do)
//! - `metrics`: increment 2 counters
//! - `set_property`: write 2 filter-state properties (decision, tool)
//! - `response`: read `:status` and `content-type` of the answer
//! - `log`: one info log line
//! - `calibrate`: at the end of each body, time each kind of host call in a
//!   loop inside the VM and log `probe-calib <kind> <ns per call>` (warn);
//!   bench/profile.py takes the minimum over requests (part 6)

use std::time::SystemTime;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default, Clone, Copy)]
struct Features {
    hold: bool,
    headers: bool,
    property: bool,
    body: bool,
    shared: bool,
    time: bool,
    metrics: bool,
    set_property: bool,
    response: bool,
    log: bool,
    calibrate: bool,
}

#[derive(Default)]
struct Root {
    features: Features,
    metrics: [u32; 2],
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let text = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let has = |name: &str| text.split(',').any(|f| f.trim() == name);
        self.features = Features {
            hold: has("hold"),
            headers: has("headers"),
            property: has("property"),
            body: has("body"),
            shared: has("shared"),
            time: has("time"),
            metrics: has("metrics"),
            set_property: has("set_property"),
            response: has("response"),
            log: has("log"),
            calibrate: has("calibrate"),
        };
        if self.features.metrics {
            for (i, name) in ["probe.calls.allowed", "probe.tool.allowed"]
                .iter()
                .enumerate()
            {
                if let (Ok(id), Some(slot)) = (
                    hostcalls::define_metric(MetricType::Counter, name),
                    self.metrics.get_mut(i),
                ) {
                    *slot = id;
                }
            }
        }
        true
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            f: self.features,
            metrics: self.metrics,
            body_size: 0,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    f: Features,
    metrics: [u32; 2],
    body_size: usize,
}

impl Context for Probe {}

const HEADERS: [&str; 7] = [
    "content-length",
    "content-encoding",
    "authorization",
    "mcp-session-id",
    "x-request-id",
    "mcp-method",
    "mcp-name",
];

impl Probe {
    /// The work the real filter does once the body is complete.
    fn at_end_of_body(&mut self) {
        if self.f.body {
            let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size);
            std::hint::black_box(body.ok());
        }
        if self.f.property {
            let addr = hostcalls::get_property(vec!["source", "address"]);
            std::hint::black_box(addr.ok());
        }
        for _ in 0..2 {
            if self.f.time {
                std::hint::black_box(
                    hostcalls::get_current_time()
                        .ok()
                        .map(|t| t == SystemTime::UNIX_EPOCH),
                );
            }
            if self.f.shared {
                for key in ["probe/v1/search_docs_rate/17", "probe/v1/all_calls/3"] {
                    let (value, cas) = hostcalls::get_shared_data(key).unwrap_or((None, None));
                    let mut v = value.unwrap_or_else(|| vec![0u8; 220]);
                    if let Some(b) = v.first_mut() {
                        *b = b.wrapping_add(1);
                    }
                    let _ = hostcalls::set_shared_data(key, Some(&v), cas);
                }
                break;
            }
        }
        if self.f.metrics {
            for id in self.metrics {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        if self.f.set_property {
            let _ = hostcalls::set_property(vec!["mcp_policy.decision"], Some(b"allowed"));
            let _ = hostcalls::set_property(vec!["mcp_policy.tool"], Some(b"search_docs"));
        }
        if self.f.log {
            log::info!("probe: judged one call");
        }
        if self.f.calibrate {
            self.calibrate();
        }
    }

    /// Nanoseconds per call of each host call kind, timed inside the VM.
    fn calibrate(&self) {
        fn now() -> u128 {
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        }
        fn timed(kind: &str, n: u32, mut f: impl FnMut()) {
            let start = now();
            for _ in 0..n {
                f();
            }
            let ns = (now().saturating_sub(start)) as f64 / f64::from(n);
            log::warn!("probe-calib {kind} {ns:.0}");
        }
        let n = 1000;
        let value = [7u8; 220];
        timed("empty_loop", n, || {
            std::hint::black_box(0);
        });
        timed("get_current_time", n, || {
            std::hint::black_box(hostcalls::get_current_time().ok());
        });
        timed("get_header_present", n, || {
            std::hint::black_box(
                hostcalls::get_map_value(MapType::HttpRequestHeaders, "authorization").ok(),
            );
        });
        timed("get_header_missing", n, || {
            std::hint::black_box(
                hostcalls::get_map_value(MapType::HttpRequestHeaders, "mcp-method").ok(),
            );
        });
        timed("get_header_map_pairs_all", n, || {
            std::hint::black_box(hostcalls::get_map(MapType::HttpRequestHeaders).ok());
        });
        timed("get_property_source_address", n, || {
            std::hint::black_box(hostcalls::get_property(vec!["source", "address"]).ok());
        });
        let size = self.body_size;
        timed("get_buffer_body", n, || {
            std::hint::black_box(hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok());
        });
        timed("set_shared_data_220B", n, || {
            let _ = hostcalls::set_shared_data("probe/v1/calib/1", Some(&value), None);
        });
        timed("get_shared_data_220B", n, || {
            std::hint::black_box(hostcalls::get_shared_data("probe/v1/calib/1").ok());
        });
        timed("increment_metric", n, || {
            let _ = hostcalls::increment_metric(self.metrics[0], 1);
        });
        timed("set_property", n, || {
            let _ = hostcalls::set_property(vec!["mcp_policy.decision"], Some(b"allowed"));
        });
        timed("log_info_line", 100, || {
            log::info!("probe: calibration line");
        });
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> Action {
        if self.f.headers {
            for name in HEADERS {
                // get_map_value panics on unexpected statuses; in the headers
                // callback the map is always there.
                std::hint::black_box(
                    hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok(),
                );
            }
        }
        if end_of_stream {
            return Action::Continue;
        }
        if self.f.hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let buffering = self.f.hold || self.f.body;
        self.body_size = body_size;
        if !end_of_stream {
            return if buffering {
                Action::Pause
            } else {
                Action::Continue
            };
        }
        self.at_end_of_body();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _end_of_stream: bool) -> Action {
        if self.f.response {
            for name in [":status", "content-type"] {
                std::hint::black_box(
                    hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok(),
                );
            }
        }
        Action::Continue
    }
}
