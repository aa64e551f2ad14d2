//! Attacker-controlled text (a token's `sub`, a host name, a client
//! reference) quoted in error answers and log lines: cut short and with
//! control characters replaced, so a request can neither inflate the log
//! nor forge lines in it.

use std::borrow::Cow;

/// Characters of quoted text kept.
pub const MAX_CHARS: usize = 64;

/// `text`, at most [`MAX_CHARS`] characters, with `…` where it was cut and
/// U+FFFD for each control character.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    let clean = text.chars().take(MAX_CHARS).all(|c| !c.is_control());
    if clean && text.chars().nth(MAX_CHARS).is_none() {
        return Cow::Borrowed(text);
    }
    let mut short: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        short.push('…');
    }
    Cow::Owned(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_control_text_is_cut_and_cleaned() {
        assert!(matches!(excerpt("gpu-01"), Cow::Borrowed("gpu-01")));
        let exact = "x".repeat(MAX_CHARS);
        assert_eq!(excerpt(&exact), exact.as_str());
        let long = "é".repeat(45_000);
        let short = excerpt(&long);
        assert_eq!(short.chars().count(), MAX_CHARS + 1);
        assert!(short.ends_with('…'));
        assert_eq!(excerpt("a\nb\u{1b}[31m"), "a\u{fffd}b\u{fffd}[31m");
    }
}
