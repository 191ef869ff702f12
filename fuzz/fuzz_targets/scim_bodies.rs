//! SCIM request bodies: the first byte picks `POST /Users` or `POST /Groups`, the rest is the
//! body, read as the server reads it (parse, schema, bounds, mapping, rendering).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let _ = if kind % 2 == 0 {
        scim::fuzzing::user_body(body)
    } else {
        scim::fuzzing::group_body(body)
    };
});
