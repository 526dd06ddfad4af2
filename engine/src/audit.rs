//! Audit lines: one JSON object per judged tool call, for log pipelines.

use crate::engine::CallRecord;
use crate::write::ObjectWriter;

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
        .finish()
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
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_567_335_000), "2026-11-25T00:42:15.000Z");
    }
}
