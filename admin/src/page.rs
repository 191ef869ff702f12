//! Page sizes and page tokens.
//!
//! A page token is the sort key of the last row returned plus a fingerprint of the query, as
//! URL-safe base64 of JSON. The next page starts strictly after that key in the current data,
//! so concurrent writes never make a page repeat or skip a row that did not itself change.
//! A token from another query is refused rather than misread.

use crate::{Error, Result};
use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

/// The page size asked for: 0 means the default; more than the maximum is an error.
pub(crate) fn size(field: &str, asked: u32) -> Result<usize> {
    match asked as usize {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(Error::invalid(
            field,
            format!("{n} is more than the maximum of {MAX_PAGE_SIZE}"),
        )),
        n => Ok(n),
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Token<T> {
    /// The query fingerprint.
    q: String,
    /// The last row's key.
    a: T,
}

fn fingerprint(query: &str) -> String {
    hex::encode(&Sha256::digest(query.as_bytes())[..8])
}

pub(crate) fn encode<T: Serialize>(query: &str, after: &T) -> String {
    let token = Token {
        q: fingerprint(query),
        a: after,
    };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// Cuts `rows`, read with one more than `size` to learn whether more follow, to `size`, and
/// returns the next page's token: the last row's `key`, or empty when no row follows.
pub(crate) fn next<R, K: Serialize>(
    rows: &mut Vec<R>,
    size: usize,
    query: &str,
    key: impl Fn(&R) -> K,
) -> String {
    if rows.len() <= size {
        return String::new();
    }
    rows.truncate(size);
    rows.last()
        .map(|row| encode(query, &key(row)))
        .unwrap_or_default()
}

/// The key a page token carries; `None` for the first page (an empty token).
pub(crate) fn decode<T: DeserializeOwned>(
    field: &str,
    token: &str,
    query: &str,
) -> Result<Option<T>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid(field, "not a page token this server issued");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let token: Token<T> = serde_json::from_slice(&json).map_err(|_| bad())?;
    if token.q != fingerprint(query) {
        return Err(Error::invalid(
            field,
            "the page token belongs to a different query (search, filter or sort changed)",
        ));
    }
    Ok(Some(token.a))
}
