//! Audit lines: one JSON object per judged tool call, for log pipelines;
//! one per refused batch, with counts (a batch cannot multiply log lines).

use crate::answer::Outcome;
use crate::policy::AuditLevel;
use crate::write::ObjectWriter;

/// One judged `tools/call`, for metrics and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub tool: String,
    pub outcome: Outcome,
    /// The policy part that refused it (None when allowed).
    pub rule: Option<String>,
    pub reason: Option<String>,
}

/// The rule marking a call that was acceptable but sat in a refused batch.
pub const BATCH_RULE: &str = "batch";

/// What one audit line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry<'c> {
    Call(&'c CallRecord),
    /// A refused batch: its first refused call speaks for it, with counts.
    Batch {
        first: &'c CallRecord,
        counts: BatchCounts,
    },
}

/// The tool calls of a refused batch, by what happened to them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchCounts {
    pub calls: usize,
    pub denied: usize,
    pub rate_limited: usize,
    pub approval_refused: usize,
    /// Acceptable calls not forwarded because a sibling was refused.
    pub held_back: usize,
}

/// The audit lines due for the judged calls of one request at `level`.
pub fn entries(level: AuditLevel, calls: &[CallRecord]) -> Vec<Entry<'_>> {
    let refused = |c: &&CallRecord| c.outcome != Outcome::Allowed;
    // Most requests: allowed calls at the default level, nothing to write.
    if level == AuditLevel::Off
        || (level == AuditLevel::Refused && !calls.iter().any(|c| refused(&c)))
    {
        return Vec::new();
    }
    let first = calls
        .iter()
        .filter(refused)
        .find(|c| c.rule.as_deref() != Some(BATCH_RULE))
        .or_else(|| calls.iter().find(refused));
    match (level, first) {
        (AuditLevel::Off, _) => Vec::new(),
        (_, Some(first)) if calls.len() > 1 => {
            let mut counts = BatchCounts {
                calls: calls.len(),
                ..BatchCounts::default()
            };
            for call in calls {
                match call.outcome {
                    _ if call.rule.as_deref() == Some(BATCH_RULE) => counts.held_back += 1,
                    Outcome::RateLimited => counts.rate_limited += 1,
                    Outcome::ApprovalRefused => counts.approval_refused += 1,
                    _ => counts.denied += 1,
                }
            }
            vec![Entry::Batch { first, counts }]
        }
        (AuditLevel::Refused, _) => calls.iter().filter(refused).map(Entry::Call).collect(),
        (AuditLevel::All, _) => calls.iter().map(Entry::Call).collect(),
    }
}

/// The JSON text of one entry.
pub fn entry_line(ctx: &AuditContext<'_>, entry: &Entry<'_>) -> String {
    match entry {
        Entry::Call(call) => line(ctx, call),
        Entry::Batch { first, counts } => {
            let n = |v: usize| v.to_string();
            let batch = ObjectWriter::new()
                .raw("calls", &n(counts.calls))
                .raw("denied", &n(counts.denied))
                .raw("rate_limited", &n(counts.rate_limited))
                .raw("approval_refused", &n(counts.approval_refused))
                .raw("held_back", &n(counts.held_back))
                .finish();
            fields(ctx, first).raw("batch", &batch).finish()
        }
    }
}

/// What an audit line says beyond the call record.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuditContext<'a> {
    pub now_ms: u64,
    pub request_id: Option<&'a str>,
    /// Keyed fingerprint of the grant, never the credential itself.
    pub grant: &'a str,
    pub session: Option<&'a str>,
    /// The verified `sub` claim, if the policy reads claims.
    pub subject: Option<&'a str>,
    /// The mTLS peer principal, if the policy reads it.
    pub principal: Option<&'a str>,
}

/// `{"time","request_id","tool","decision","rule","reason","grant","session","subject","principal"}`
/// (never a token: claims are reduced to the subject).
pub fn line(ctx: &AuditContext<'_>, call: &CallRecord) -> String {
    fields(ctx, call).finish()
}

fn fields(ctx: &AuditContext<'_>, call: &CallRecord) -> ObjectWriter {
    ObjectWriter::new()
        .str("time", &rfc3339(ctx.now_ms))
        .opt_str("request_id", ctx.request_id)
        .str("tool", &call.tool)
        .str("decision", call.outcome.name())
        .opt_str("rule", call.rule.as_deref())
        .opt_str("reason", call.reason.as_deref())
        .str("grant", ctx.grant)
        .opt_str("session", ctx.session)
        .opt_str("subject", ctx.subject)
        .opt_str("principal", ctx.principal)
}

/// The audit line for a pinned tool listed with a changed definition:
/// `{"time","event":"pin_mismatch","tool","decision","rule","reason"}`,
/// where `decision` says what the list answer did with it (`hidden` or
/// `flagged`). None when audit lines are off.
pub fn pin_mismatch_line(
    level: AuditLevel,
    now_ms: u64,
    mismatch: &crate::pins::Mismatch,
    flag: bool,
) -> Option<String> {
    if level == AuditLevel::Off {
        return None;
    }
    Some(
        ObjectWriter::new()
            .str("time", &rfc3339(now_ms))
            .str("event", "pin_mismatch")
            .str("tool", &mismatch.tool)
            .str("decision", if flag { "flagged" } else { "hidden" })
            .str("rule", &crate::pins::Pins::rule(&mismatch.tool))
            .str("reason", &mismatch.reason)
            .finish(),
    )
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, no dependency).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days -> civil date algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn record(tool: &str, outcome: Outcome, rule: Option<&str>) -> CallRecord {
        CallRecord {
            tool: tool.to_string(),
            outcome,
            rule: rule.map(str::to_string),
            reason: rule.map(|r| format!("because {r}")),
        }
    }

    #[test]
    fn a_refused_batch_gets_one_line_with_counts() {
        let mut calls = vec![record("ok", Outcome::Denied, Some(BATCH_RULE)); 40];
        calls.push(record("rm", Outcome::Denied, Some("tools.rm")));
        calls.push(record("x", Outcome::RateLimited, Some("limits.c")));
        for level in [AuditLevel::Refused, AuditLevel::All] {
            let entries = entries(level, &calls);
            assert_eq!(entries.len(), 1, "{entries:?}");
            let text = entry_line(&AuditContext::default(), &entries[0]);
            assert!(
                text.contains(r#""tool":"rm","decision":"denied","rule":"tools.rm""#),
                "{text}"
            );
            assert!(
                text.contains(r#""batch":{"calls":42,"denied":1,"rate_limited":1,"approval_refused":0,"held_back":40}"#),
                "{text}"
            );
        }
        assert!(entries(AuditLevel::Off, &calls).is_empty());
    }

    #[test]
    fn single_calls_and_forwarded_batches_get_a_line_per_call() {
        let one = [record("rm", Outcome::Denied, Some("tools.rm"))];
        assert_eq!(
            entries(AuditLevel::Refused, &one),
            vec![Entry::Call(&one[0])]
        );
        let allowed = [
            record("a", Outcome::Allowed, None),
            record("b", Outcome::Allowed, None),
        ];
        assert!(entries(AuditLevel::Refused, &allowed).is_empty());
        assert_eq!(entries(AuditLevel::All, &allowed).len(), 2);
    }

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_567_335_000), "2026-11-25T00:42:15.000Z");
    }
}
