//! The import format (docs/import-format.md) as `portcullis import` and the admin API's
//! `ImportDirectory` read it: every line parsed, the directory checked as the API checks it.
//! The input is the files one after the other, separated by a line `====`: users.jsonl,
//! groups.jsonl, policies.jsonl, agents.jsonl, approval_flows.jsonl, settings.json.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

const FILES: &[&str] = &[
    "users.jsonl",
    "groups.jsonl",
    "policies.jsonl",
    "agents.jsonl",
    "approval_flows.jsonl",
    "settings.json",
];

fuzz_target!(|data: &[u8]| {
    let mut files = BTreeMap::new();
    let mut rest = data;
    for name in FILES {
        let (file, next) = match rest.windows(6).position(|w| w == b"\n====\n") {
            Some(at) => (&rest[..at], &rest[at + 6..]),
            None => (rest, &[][..]),
        };
        files.insert((*name).to_owned(), file.to_vec());
        rest = next;
        if rest.is_empty() {
            break;
        }
    }
    let _ = workload::read_checked(
        workload::Source::Files(&files),
        pdp::Timestamp(1_700_000_000_000),
        &mut |_| {},
        |loaded| admin::import::check(loaded).err().unwrap_or_default(),
    );
});
