//! Checks and matching on request strings.

use crate::{Error, Result};

/// Longest string field accepted (names, searches, ids).
pub const MAX_LEN: usize = 1024;

pub(crate) fn bounded(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LEN {
        return Err(Error::invalid(
            field,
            format!("{} bytes, the limit is {MAX_LEN}", value.len()),
        ));
    }
    Ok(())
}

/// Longest record id, in bytes (as the store keeps ids).
pub const MAX_ID: usize = 256;

/// A value a request must give: not empty, at most `max` bytes.
pub(crate) fn present(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("{} bytes, the limit is {max}", value.len()),
        ));
    }
    Ok(())
}

/// A record id a request names: present, not too long, no NUL.
pub(crate) fn id(field: &str, id: &str) -> Result<()> {
    present(field, id, MAX_ID)?;
    if id.contains('\0') {
        return Err(Error::invalid(field, "must not contain a NUL character"));
    }
    Ok(())
}

pub(crate) fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    bounded(field, value)
}

/// Whether `haystack` contains `needle` (already lower-cased), ignoring case; allocation-free
/// for ASCII haystacks.
pub(crate) fn contains_folded(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if haystack.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        return h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search() {
        assert!(contains_folded("Alice.Smith@Example.com", "smith@ex"));
        assert!(!contains_folded("alice@example.com", "bob"));
        assert!(contains_folded("ÉLISE@example.com", "élise"));
        assert!(contains_folded("a", ""));
        assert!(!contains_folded("a", "ab"));
    }
}
