//! Client text echoed back in answers and errors, bounded in size: an
//! answer must never amplify the request it refuses. A leaf module so the
//! policy model and the answers can both use it.

/// Longest tool name echoed back: an answer must never be an amplifier
/// (a 200 KB name must not come back four times).
pub const MAX_ECHOED_NAME: usize = 128;

/// `name`, cut to `MAX_ECHOED_NAME` characters with a marker if longer.
pub fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    cut(name, MAX_ECHOED_NAME)
}

/// `text` cut to `max` characters with a marker if longer.
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    // No more bytes than `max`, so no more characters: nothing to count.
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    match text.char_indices().nth(max) {
        Some((at, _)) => std::borrow::Cow::Owned(format!(
            "{}...(+{} bytes)",
            text.get(..at).unwrap_or(""),
            text.len() - at
        )),
        None => std::borrow::Cow::Borrowed(text),
    }
}
