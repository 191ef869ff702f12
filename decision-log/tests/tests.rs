//! The decision log's suite, one binary: run against real stores in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backup;
mod decisions;
mod support;
