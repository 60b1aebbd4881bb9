//! How a reason reads: Vietnamese first, then English.

/// `"<vi> / <en>"`.
pub fn reason(vi: &str, en: &str) -> String {
    format!("{vi} / {en}")
}
