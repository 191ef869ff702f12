//! End-to-end tests of the workload crate, one module per area, in one test binary.

// Helpers outside `#[test]` functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod generated;
mod genpy;
mod read;
mod shape;

use std::sync::OnceLock;
use workload::{Generated, Params};

/// The `small` preset with seed 1 or 2, generated once per test binary.
fn small(seed: u64) -> &'static Generated {
    static ONE: OnceLock<Generated> = OnceLock::new();
    static TWO: OnceLock<Generated> = OnceLock::new();
    let cell = match seed {
        1 => &ONE,
        2 => &TWO,
        _ => panic!("only seeds 1 and 2 are cached"),
    };
    cell.get_or_init(|| {
        workload::generate(&Params {
            seed,
            ..Params::SMALL
        })
        .expect("small params are valid")
    })
}
