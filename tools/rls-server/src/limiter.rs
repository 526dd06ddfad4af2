//! Fixed-window counting in Redis, one atomic Lua script per request.
//!
//! Each descriptor of a request becomes one counter key:
//! - a descriptor with a `counter` entry (what mcp-policy sends) counts per
//!   (domain, counter, scope_value): the `tool` and `scope` entries do not
//!   split the budget, so tools naming the same counter share it;
//! - any other descriptor counts per (domain, every entry in order).
//!
//! The limit is the descriptor's `limit` override (requests_per_unit, unit),
//! else `--default-limit`, else there is none (the descriptor is OK and never
//! touches Redis). Windows are aligned to the unit on Redis's own clock
//! (`TIME`), so every replica of this service agrees on them; a window's key
//! expires at the window's end.
//!
//! The script first checks every descriptor and only then, if all have room,
//! adds the hits to all of them: a refused request consumes nothing, and two
//! descriptors naming the same key are checked against their sum.

use crate::proto::{Code, DescriptorStatus, Duration, RateLimit, RateLimitRequest, Unit};

/// KEYS[i]: counter key of descriptor i without its window.
/// ARGV[3i-2], ARGV[3i-1], ARGV[3i]: its window length in seconds, its limit,
/// its hits.
/// Returns three integers per descriptor: 1 if over the limit else 0, the
/// count of its window after this request, milliseconds until the window ends.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keys, ends, adds, values, over = {}, {}, {}, {}, {}
local any_over = false
for i = 1, #KEYS do
  local unit_ms = tonumber(ARGV[3 * i - 2]) * 1000
  local limit = tonumber(ARGV[3 * i - 1])
  local hits = tonumber(ARGV[3 * i])
  local window = math.floor(now_ms / unit_ms)
  local key = KEYS[i] .. ':' .. ARGV[3 * i - 2] .. 's:' .. string.format('%d', window)
  keys[i] = key
  ends[i] = (window + 1) * unit_ms
  adds[key] = (adds[key] or 0) + hits
  if values[key] == nil then
    values[key] = tonumber(redis.call('GET', key) or '0')
  end
  if values[key] + adds[key] > limit then
    over[i] = 1
    any_over = true
  else
    over[i] = 0
  end
end
if not any_over then
  for i = 1, #KEYS do
    local key = keys[i]
    if adds[key] ~= nil then
      values[key] = redis.call('INCRBY', key, adds[key])
      redis.call('PEXPIREAT', key, string.format('%d', ends[i]))
      adds[key] = nil
    end
  end
end
local res = {}
for i = 1, #KEYS do
  table.insert(res, over[i])
  table.insert(res, values[keys[i]])
  table.insert(res, ends[i] - now_ms)
end
return res
";

/// A limit: `requests` per `unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub requests: u32,
    pub unit: Unit,
}

impl Limit {
    /// Parses `10/minute` (units: second, minute, hour, day).
    pub fn parse(text: &str) -> Result<Limit, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/UNIT, got {text:?}"))?;
        let requests = count
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("expected a count before '/', got {count:?}"))?;
        let unit = match unit.trim().to_ascii_lowercase().as_str() {
            "second" | "s" => Unit::Second,
            "minute" | "m" => Unit::Minute,
            "hour" | "h" => Unit::Hour,
            "day" | "d" => Unit::Day,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (second, minute, hour, day)"
                ))
            }
        };
        Ok(Limit { requests, unit })
    }
}

/// Window length of a unit; months and years have no fixed length and are
/// refused.
pub fn unit_seconds(unit: Unit) -> Option<u64> {
    match unit {
        Unit::Second => Some(1),
        Unit::Minute => Some(60),
        Unit::Hour => Some(3_600),
        Unit::Day => Some(86_400),
        Unit::Unknown | Unit::Month | Unit::Year => None,
    }
}

/// One descriptor ready for the script.
#[derive(Debug, PartialEq, Eq)]
pub struct Planned {
    pub key: String,
    pub limit: Limit,
    pub hits: u64,
}

/// Key part with `%` and `:` escaped, so parts never run into each other.
fn escape(part: &str, out: &mut String) {
    out.push(':');
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            _ => out.push(c),
        }
    }
}

/// The counter key of a descriptor (without its window).
pub fn counter_key(prefix: &str, domain: &str, entries: &[(&str, &str)]) -> String {
    let mut key = String::from(prefix);
    escape(domain, &mut key);
    let counter = entries.iter().find(|(k, _)| *k == "counter");
    if let Some((_, counter)) = counter {
        let scope_value = entries
            .iter()
            .find(|(k, _)| *k == "scope_value")
            .map(|(_, v)| *v)
            .unwrap_or("");
        key.push_str(":c");
        escape(counter, &mut key);
        escape(scope_value, &mut key);
    } else {
        key.push_str(":e");
        for (k, v) in entries {
            escape(k, &mut key);
            escape(v, &mut key);
        }
    }
    key
}

/// Limits and keys of a request's descriptors: `None` for a descriptor with
/// no limit (always OK). Errors name what the request got wrong.
pub fn plan(
    prefix: &str,
    request: &RateLimitRequest,
    default_limit: Option<Limit>,
) -> Result<Vec<Option<Planned>>, String> {
    if request.domain.is_empty() {
        return Err("the request has no domain".into());
    }
    let request_hits = u64::from(request.hits_addend.max(1));
    let mut planned = Vec::with_capacity(request.descriptors.len());
    for (i, descriptor) in request.descriptors.iter().enumerate() {
        if descriptor.entries.is_empty() {
            return Err(format!("descriptor {i} has no entries"));
        }
        let limit = match &descriptor.limit {
            Some(over) => {
                let unit = Unit::try_from(over.unit).unwrap_or(Unit::Unknown);
                Some(Limit {
                    requests: over.requests_per_unit,
                    unit,
                })
            }
            None => default_limit,
        };
        let Some(limit) = limit else {
            planned.push(None);
            continue;
        };
        if unit_seconds(limit.unit).is_none() {
            return Err(format!(
                "descriptor {i}: unit {:?} is not supported (second, minute, hour, day)",
                limit.unit
            ));
        }
        let entries: Vec<(&str, &str)> = descriptor
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        let hits = descriptor
            .hits_addend
            .as_ref()
            .map(|h| h.value)
            .unwrap_or(request_hits);
        planned.push(Some(Planned {
            key: counter_key(prefix, &request.domain, &entries),
            limit,
            hits,
        }));
    }
    Ok(planned)
}

/// Runs the script for the planned descriptors and builds the statuses.
pub async fn decide<C: redis::aio::ConnectionLike>(
    con: &mut C,
    planned: &[Option<Planned>],
) -> redis::RedisResult<(Code, Vec<DescriptorStatus>)> {
    let limited: Vec<&Planned> = planned.iter().flatten().collect();
    let mut results: Vec<i64> = Vec::new();
    if !limited.is_empty() {
        let script = redis::Script::new(SCRIPT);
        let mut invocation = script.prepare_invoke();
        for p in &limited {
            invocation.key(&p.key);
            invocation
                .arg(unit_seconds(p.limit.unit).unwrap_or(1))
                .arg(p.limit.requests)
                .arg(p.hits);
        }
        results = invocation.invoke_async(con).await?;
    }
    let mut overall = Code::Ok;
    let mut statuses = Vec::with_capacity(planned.len());
    let mut triples = results.chunks(3);
    for p in planned {
        let Some(p) = p else {
            statuses.push(DescriptorStatus {
                code: Code::Ok as i32,
                ..Default::default()
            });
            continue;
        };
        let (over, count, reset_ms) = match triples.next() {
            Some([over, count, reset_ms]) => (*over != 0, *count, *reset_ms),
            _ => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "the script returned too few values",
                )))
            }
        };
        if over {
            overall = Code::OverLimit;
        }
        let remaining = i64::from(p.limit.requests).saturating_sub(count).max(0);
        let reset_ms = reset_ms.max(0);
        statuses.push(DescriptorStatus {
            code: if over { Code::OverLimit } else { Code::Ok } as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: p.limit.requests,
                unit: p.limit.unit as i32,
                name: String::new(),
            }),
            limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            duration_until_reset: Some(Duration {
                seconds: reset_ms / 1000,
                nanos: i32::try_from((reset_ms % 1000) * 1_000_000).unwrap_or(0),
            }),
        });
    }
    Ok((overall, statuses))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Entry, RateLimitDescriptor, RateLimitOverride};

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
        }
    }

    fn mcp_descriptor(
        counter: &str,
        scope_value: &str,
        tool: &str,
        max: u32,
    ) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: vec![
                entry("counter", counter),
                entry("scope", "grant"),
                entry("scope_value", scope_value),
                entry("tool", tool),
            ],
            limit: Some(RateLimitOverride {
                requests_per_unit: max,
                unit: Unit::Minute as i32,
            }),
            hits_addend: None,
        }
    }

    #[test]
    fn tools_sharing_a_counter_share_the_key() {
        let a = [("counter", "c"), ("scope_value", "ab"), ("tool", "x")];
        let b = [("tool", "y"), ("scope_value", "ab"), ("counter", "c")];
        assert_eq!(counter_key("rls", "d", &a), counter_key("rls", "d", &b));
        assert_eq!(counter_key("rls", "d", &a), "rls:d:c:c:ab");
        assert_ne!(
            counter_key("rls", "d", &a),
            counter_key("rls", "d", &[("counter", "c"), ("scope_value", "cd")])
        );
        assert_ne!(counter_key("rls", "d", &a), counter_key("rls", "e", &a));
    }

    #[test]
    fn parts_cannot_run_into_each_other() {
        let one = counter_key("rls", "d", &[("counter", "a:b"), ("scope_value", "c")]);
        let two = counter_key("rls", "d", &[("counter", "a"), ("scope_value", "b:c")]);
        assert_ne!(one, two);
        assert_eq!(one, "rls:d:c:a%3Ab:c");
    }

    #[test]
    fn generic_descriptors_key_on_every_entry() {
        let key = counter_key("rls", "d", &[("generic_key", "g"), ("user", "u")]);
        assert_eq!(key, "rls:d:e:generic_key:g:user:u");
    }

    #[test]
    fn plan_uses_the_override_then_the_default() {
        let mut request = RateLimitRequest {
            domain: "mcp_policy".into(),
            descriptors: vec![mcp_descriptor("c", "ab", "t", 10)],
            hits_addend: 0,
        };
        request.descriptors.push(RateLimitDescriptor {
            entries: vec![entry("generic_key", "g")],
            limit: None,
            hits_addend: None,
        });
        let planned = plan("rls", &request, None).unwrap();
        assert_eq!(
            planned[0],
            Some(Planned {
                key: "rls:mcp_policy:c:c:ab".into(),
                limit: Limit {
                    requests: 10,
                    unit: Unit::Minute
                },
                hits: 1
            })
        );
        assert_eq!(planned[1], None);
        request.hits_addend = 3;
        let default = Limit::parse("5/second").unwrap();
        let planned = plan("rls", &request, Some(default)).unwrap();
        assert_eq!(planned[0].as_ref().unwrap().hits, 3);
        assert_eq!(planned[1].as_ref().unwrap().limit, default);
    }

    #[test]
    fn plan_refuses_units_without_a_fixed_length() {
        let mut descriptor = mcp_descriptor("c", "ab", "t", 10);
        descriptor.limit = Some(RateLimitOverride {
            requests_per_unit: 1,
            unit: Unit::Month as i32,
        });
        let request = RateLimitRequest {
            domain: "d".into(),
            descriptors: vec![descriptor],
            hits_addend: 0,
        };
        assert!(plan("rls", &request, None).is_err());
    }

    #[test]
    fn limit_parse() {
        assert_eq!(
            Limit::parse("10/minute"),
            Ok(Limit {
                requests: 10,
                unit: Unit::Minute
            })
        );
        assert!(Limit::parse("10").is_err());
        assert!(Limit::parse("x/minute").is_err());
        assert!(Limit::parse("1/week").is_err());
    }
}
