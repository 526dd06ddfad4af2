//! Cluster-wide limits through Envoy's rate limit service API
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), as
//! served by envoyproxy/ratelimit or Limitador in front of Redis.
//!
//! The filter keeps counting locally too: this replica's count can never
//! exceed the global count, so a local counter already at `max` refuses the
//! call without a network round trip (pre-check), and the same local count
//! is the fallback limit when the service fails and `failure_mode` is
//! `local`.

use prost::Message;

use crate::policy::{Counter, Window};

/// gRPC service and method the filter calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

// The subset of the Envoy protos the filter sends and reads (field numbers
// from envoy/service/ratelimit/v3/rls.proto and
// envoy/extensions/common/ratelimit/v3/ratelimit.proto).

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    /// envoy.type.v3.RateLimitUnit: SECOND=1, MINUTE=2, HOUR=3, DAY=4.
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct RateLimitResponse {
    /// UNKNOWN=0, OK=1, OVER_LIMIT=2.
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The limit the service applied (`RateLimitResponse.RateLimit`, whose
    /// fields 1 and 2 match the override's).
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimitOverride>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const CODE_OK: i32 = 1;
const CODE_OVER_LIMIT: i32 = 2;

fn unit(window: Window) -> i32 {
    match window {
        Window::Second => 1,
        Window::Minute => 2,
        Window::Hour => 3,
        Window::Day => 4,
        // RateLimitResponse.RateLimit.Unit: MONTH = 5, WEEK = 7.
        Window::Month => 5,
        Window::Week => 7,
    }
}

/// One global limit a call needs: which counter, whose budget, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalTake {
    pub counter: usize,
    pub fingerprint: u64,
    /// Whole units (fractional increments are rounded up).
    pub amount: u64,
    pub tool: String,
}

/// Encodes the `ShouldRateLimit` request for `takes`.
pub fn encode_request(
    domain: &str,
    counters: &[Counter],
    takes: &[GlobalTake],
    include_tool: bool,
) -> Vec<u8> {
    let descriptors = takes
        .iter()
        .filter_map(|t| {
            let c = counters.get(t.counter)?;
            let mut entries = vec![
                entry("counter", &c.name),
                entry("scope", c.scope.name()),
                entry("scope_value", &format!("{:016x}", t.fingerprint)),
            ];
            if include_tool {
                entries.push(entry("tool", &t.tool));
            }
            Some(RateLimitDescriptor {
                entries,
                limit: Some(RateLimitOverride {
                    requests_per_unit: u32::try_from(c.max).unwrap_or(u32::MAX),
                    unit: unit(c.window),
                }),
                hits_addend: Some(UInt64Value { value: t.amount }),
            })
        })
        .collect();
    // The request-level addend applies to services that ignore the
    // per-descriptor one; it is exact when all takes agree.
    let first = takes.first().map(|t| t.amount).unwrap_or(1);
    let uniform = takes.iter().all(|t| t.amount == first);
    RateLimitRequest {
        domain: domain.to_string(),
        descriptors,
        hits_addend: if uniform {
            u32::try_from(first).unwrap_or(u32::MAX)
        } else {
            0
        },
    }
    .encode_to_vec()
}

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// The service's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalAnswer {
    Ok,
    /// Over the limit: which take (index) and the seconds until reset.
    OverLimit {
        take: usize,
        retry_after_seconds: u64,
    },
    /// Unreadable or unknown answer: treated as a service failure.
    Failed(String),
}

/// Reads a `RateLimitResponse`.
///
/// An OK whose statuses show that the service applied no limit to one of
/// the descriptors is a failure, not a pass: envoyproxy/ratelimit answers
/// that way for a domain missing from its configuration (it then ignores
/// the `limit` override), which would otherwise lift every global limit.
/// Services that send no statuses at all (Limitador) are taken at their
/// word.
pub fn decode_response(bytes: &[u8]) -> GlobalAnswer {
    let Ok(resp) = RateLimitResponse::decode(bytes) else {
        return GlobalAnswer::Failed("unreadable RateLimitResponse".to_string());
    };
    match resp.overall_code {
        CODE_OK if resp.statuses.iter().any(|s| s.current_limit.is_none()) => GlobalAnswer::Failed(
            "the service applied no limit (is the domain in its configuration?)".to_string(),
        ),
        CODE_OK => GlobalAnswer::Ok,
        CODE_OVER_LIMIT => {
            let over = resp
                .statuses
                .iter()
                .position(|s| s.code == CODE_OVER_LIMIT)
                .unwrap_or(0);
            let retry = resp
                .statuses
                .get(over)
                .and_then(|s| s.duration_until_reset.as_ref())
                .map(|d| u64::try_from(d.seconds).unwrap_or(0) + u64::from(d.nanos > 0))
                .unwrap_or(1)
                .max(1);
            GlobalAnswer::OverLimit {
                take: over,
                retry_after_seconds: retry,
            }
        }
        other => GlobalAnswer::Failed(format!("overall_code {other}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::policy::Scope;

    fn counter() -> Counter {
        Counter {
            name: "c".into(),
            window: Window::Minute,
            max: 10,
            scope: Scope::Grant,
            algorithm: crate::policy::Algorithm::Sliding,
            increment_from: None,
            default_increment_milli: None,
            global: false,
            reason: None,
        }
    }

    #[test]
    fn request_round_trips_with_entries_and_override() {
        let takes = vec![GlobalTake {
            counter: 0,
            fingerprint: 0xabc,
            amount: 1,
            tool: "t".into(),
        }];
        let bytes = encode_request("d", &[counter()], &takes, true);
        let req = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(req.domain, "d");
        assert_eq!(req.hits_addend, 1);
        let d = &req.descriptors[0];
        let keys: Vec<_> = d
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("counter", "c"),
                ("scope", "grant"),
                ("scope_value", "0000000000000abc"),
                ("tool", "t")
            ]
        );
        assert_eq!(
            d.limit,
            Some(RateLimitOverride {
                requests_per_unit: 10,
                unit: 2
            })
        );
    }

    #[test]
    fn over_limit_answer_gives_retry() {
        let resp = RateLimitResponse {
            overall_code: 2,
            statuses: vec![
                DescriptorStatus {
                    code: 1,
                    current_limit: None,
                    limit_remaining: 3,
                    duration_until_reset: None,
                },
                DescriptorStatus {
                    code: 2,
                    current_limit: None,
                    limit_remaining: 0,
                    duration_until_reset: Some(Duration {
                        seconds: 41,
                        nanos: 5,
                    }),
                },
            ],
        };
        assert_eq!(
            decode_response(&resp.encode_to_vec()),
            GlobalAnswer::OverLimit {
                take: 1,
                retry_after_seconds: 42
            }
        );
        let ok = RateLimitResponse {
            overall_code: 1,
            statuses: vec![],
        };
        assert_eq!(decode_response(&ok.encode_to_vec()), GlobalAnswer::Ok);
        assert!(matches!(
            decode_response(&[0xff, 0xff]),
            GlobalAnswer::Failed(_)
        ));
    }

    #[test]
    fn ok_without_an_applied_limit_is_a_failure() {
        let status = |limit: Option<RateLimitOverride>| DescriptorStatus {
            code: 1,
            current_limit: limit,
            limit_remaining: 0,
            duration_until_reset: None,
        };
        let applied = Some(RateLimitOverride {
            requests_per_unit: 10,
            unit: 2,
        });
        let answer = |statuses| {
            decode_response(
                &RateLimitResponse {
                    overall_code: 1,
                    statuses,
                }
                .encode_to_vec(),
            )
        };
        // envoyproxy/ratelimit for a domain it does not know.
        assert!(matches!(
            answer(vec![status(applied.clone()), status(None)]),
            GlobalAnswer::Failed(e) if e.contains("domain")
        ));
        assert_eq!(answer(vec![status(applied)]), GlobalAnswer::Ok);
        // No statuses at all (Limitador): OK stays OK.
        assert_eq!(answer(vec![]), GlobalAnswer::Ok);
    }
}
