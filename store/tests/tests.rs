//! The store's suite, one binary: run against the real API on real sled directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod audit;
mod backup;
mod changelog;
mod import;
mod integrity;
mod online_backup;
mod processes;
mod records;
mod scale;
mod support;
mod transact;
