//! The SCIM PATCH body parser, path parser and applier: a PatchOp body applied to a user and
//! to a group document, all or nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The path parser alone, on the text as is.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = scim::path::parse(text);
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(operations) = scim::patch::parse(&body) else {
        return;
    };
    for document in [
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u1",
            "userName": "alice@example.com",
            "active": true,
            "displayName": "Alice",
            "name": {"givenName": "Alice", "familyName": "Admin"},
            "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "u2"}}
        }),
        serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g1",
            "displayName": "engineering",
            "members": [{"value": "u1"}, {"value": "u2"}]
        }),
    ] {
        let before = document.clone();
        let mut after = document;
        if scim::patch::apply_within(&mut after, &operations, 100).is_err() {
            assert_eq!(after, before, "a failed PATCH changed the document");
        }
    }
});
