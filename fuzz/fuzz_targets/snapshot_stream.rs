//! The snapshot stream as a sidecar reads it: length-delimited `WatchEvent`s decoded, checked
//! and applied (snapshots built, changes applied, approval state held).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fleet::fuzzing::stream(data);
});
