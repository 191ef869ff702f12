//! The nesting depth of a JSON body, measured before it is parsed (`json-max-depth`).
//!
//! serde_json refuses past 128 levels on its own, but with a parser's error and only after
//! recursing that deep; a server bounds nesting lower, as a setting, with an error naming it.
//! One pass over the bytes counts brackets outside strings (skipping escapes); anything
//! malformed is left to the parser, so this never refuses what the parser would have read
//! within the bound.

/// The most levels any body may nest: serde_json stops at 128 (counting the outermost), so a
/// deeper setting would never be reached.
pub const MAX_JSON_DEPTH: usize = 127;

/// The default of `json-max-depth`.
pub const DEFAULT_JSON_DEPTH: usize = 64;

/// `Err(offset)` of the first `[` or `{` that opens level `max + 1` of `bytes`.
pub fn within_depth(bytes: &[u8], max: usize) -> Result<(), usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The error text of a body over `max` levels, naming the setting.
pub fn too_deep(max: usize, at: usize) -> String {
    format!("the body nests deeper than {max} levels (at byte {at}); the limit is `json-max-depth`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn brackets_outside_strings_count() {
        assert_eq!(within_depth(nested(3).as_bytes(), 3), Ok(()));
        assert_eq!(within_depth(nested(4).as_bytes(), 3), Err(3));
        assert_eq!(within_depth(br#"{"a": {"b": [1]}}"#, 3), Ok(()));
        assert_eq!(within_depth(br#"{"a": {"b": [{}]}}"#, 3), Err(13));
        // Brackets in strings, escaped quotes included, are text.
        assert_eq!(within_depth(br#"{"a": "[[[[\"[[[["}"#, 1), Ok(()));
        assert_eq!(within_depth(br#"["\\", [[]]]"#, 2), Err(8));
        // Unbalanced closers never go below zero (the parser refuses them).
        assert_eq!(within_depth(b"]]]][[", 2), Ok(()));
    }

    #[test]
    fn serde_json_reads_the_deepest_setting() {
        let deepest = nested(MAX_JSON_DEPTH);
        assert!(within_depth(deepest.as_bytes(), MAX_JSON_DEPTH).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok());
        assert!(serde_json::from_str::<serde_json::Value>(&nested(MAX_JSON_DEPTH + 1)).is_err());
    }
}
