//! Reasons quoted back to the viewer: lists cut short, quotes sanitized and shortened.

/// Longest excerpt of viewer text quoted back in a reason, in characters.
const QUOTE_MAX_CHARS: usize = 24;

/// Most choices, words or suggestions listed in one reason.
const MAX_LISTED: usize = 8;

/// Appends up to [`MAX_LISTED`] items separated by `sep`, then "and N more".
pub(super) fn push_list<S: AsRef<str>>(out: &mut String, items: impl Iterator<Item = S>, sep: &str) {
    let mut extra = 0usize;
    for (i, item) in items.enumerate() {
        if i >= MAX_LISTED {
            extra += 1;
            continue;
        }
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(item.as_ref());
    }
    if extra > 0 {
        out.push_str(&format!(" and {extra} more"));
    }
}

/// Appends viewer text in quotes, shortened, with control and invisible characters escaped.
pub(super) fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    push_sanitized(out, text);
    out.push('"');
}

pub(super) fn push_sanitized(out: &mut String, text: &str) {
    let mut chars = text.chars();
    for c in chars.by_ref().take(QUOTE_MAX_CHARS) {
        if c.is_control() || is_invisible(c) || c == '"' || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() {
        out.push('…');
    }
}

/// Zero-width and bidirectional-control characters that would garble a reason shown to people.
pub(super) fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Catalog text as shown in reasons: trimmed, sanitised, shortened.
pub(super) fn display_text(text: &str) -> String {
    let mut out = String::new();
    push_sanitized(&mut out, text.trim());
    out
}
