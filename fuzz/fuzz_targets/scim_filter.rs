//! The SCIM filter parser (`?filter=`, `.search`), and matching what it accepts against a user.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(filter) = scim::filter::parse(text) {
        let _ = filter.attributes();
        let _ = filter.as_equality();
        let user = serde_json::json!({
            "id": "u1",
            "userName": "alice@example.com",
            "active": true,
            "name": {"givenName": "Alice", "familyName": "Admin"},
            "emails": [{"value": "alice@example.com", "type": "work", "primary": true}],
            "meta": {"created": "2026-01-01T00:00:00Z", "lastModified": "2026-01-02T00:00:00Z"}
        });
        let _ = filter.matches(&user);
    }
});
