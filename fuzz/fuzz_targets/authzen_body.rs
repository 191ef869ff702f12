//! AuthZEN request bodies (`POST /access/v1/evaluation`, `/evaluations` and the action and
//! resource searches), read up to the decision: JSON, the mapping to Check's request, Check's
//! own bounds, batches and semantics, search pages and their tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pdp_service::authzen::read_body(data);
});
