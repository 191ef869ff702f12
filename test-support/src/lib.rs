//! What the workspace's test suites share, said once: waits bounded by a deadline, a seeded
//! store in a temporary directory, a loopback listener on an ephemeral port with its shutdown,
//! and the directory records several suites build. Only a dev-dependency; each suite's own
//! `tests/support.rs` keeps what is its own and re-exports from here.

// Test code: a failed set-up is a failed test, said by the panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod records;
pub mod served;
pub mod wait;

pub use records::{imported_user, member};
pub use served::{Shutdown, loopback, seeded_store};
pub use wait::{Deadline, PATIENCE, holds_for, wait_for, wait_for_async};
