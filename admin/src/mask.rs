//! Field masks of the Update RPCs: which of a message's fields a call changes.

use crate::{Error, Result};
use std::collections::HashSet;

/// The fields `mask` names, each one of `known` (the fields `rpc` can change), and the mask's
/// paths as sent; an empty or absent mask, or an unknown field, is INVALID_ARGUMENT on
/// `update_mask` (`example` says what a mask looks like).
pub(crate) fn fields(
    mask: Option<prost_types::FieldMask>,
    known: &[&'static str],
    rpc: &str,
    example: &str,
) -> Result<(HashSet<&'static str>, Vec<String>)> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!("list the fields to change, for example `{example}`"),
        ));
    }
    let mut wanted = HashSet::new();
    for path in &paths {
        let Some(field) = known.iter().find(|f| **f == path.as_str()) else {
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "`{path}` is not a field {rpc} changes (one of {})",
                    known.join(", ")
                ),
            ));
        };
        wanted.insert(*field);
    }
    Ok((wanted, paths))
}
