//! The admin suite, one binary: every test starts a real server on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod apply_policies;
mod approval_flows;
mod groups;
mod policies;
mod support;
mod tokens;
mod users;
mod webhooks;
