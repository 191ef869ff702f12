//! What the suite's modules share: the directory the decisions name, and decisions.

use decision_log::LoggedDecision;
use pdp::{Action, Reason, User};
use std::sync::atomic::{AtomicBool, Ordering};
use store::Store;

pub const NOW: i64 = 1_767_225_600_000;
pub const DAY: i64 = 24 * 60 * 60 * 1000;

/// A user `<id>` with user name and email `<id>@example.com`, another email
/// `<id>@alt.example.com` and external id `ext-<id>`.
pub fn user(id: &str) -> User {
    let mut user = test_support::imported_user(
        id,
        &format!("{id}@example.com"),
        &format!("User {id}"),
        format!("ext-{id}"),
    );
    user.emails.push(format!("{id}@alt.example.com"));
    user
}

/// A store in a temporary directory holding users alice and bob.
pub fn alice_and_bob() -> (tempfile::TempDir, Store) {
    test_support::seeded_store(&pdp::Model {
        users: vec![user("alice"), user("bob")],
        ..pdp::Model::default()
    })
}

/// The user the engine resolves each reference of these tests to, in the directory
/// [`alice_and_bob`] writes: the log files a decision under what the engine said, never
/// resolving it again.
fn engine_resolves(user: &str) -> Option<String> {
    let alice = [
        "alice",
        "ext-alice",
        "alice@example.com",
        "alice@alt.example.com",
    ];
    match user.to_lowercase().as_str() {
        u if alice.contains(&u) => Some("alice".into()),
        "bob" => Some("bob".into()),
        _ => None,
    }
}

/// A decision at `time_ms` for `user` as the caller named them.
pub fn decision(user: &str, time_ms: i64, tool: &str) -> LoggedDecision {
    LoggedDecision {
        seq: 0,
        time_ms,
        decision_id: format!("id-{user}-{tool}-{time_ms}"),
        user: user.into(),
        user_id: engine_resolves(user),
        agent: "claude".into(),
        connector: "github".into(),
        tool: tool.into(),
        action: Action::Allow,
        reason: Reason::Policy,
        policy_id: Some("p1".into()),
        revision: 3,
        latency_ns: 4_200,
        approval_id: None,
    }
}

/// A decision about a user the engine did not know.
pub fn unknown(user: &str, time_ms: i64, tool: &str) -> LoggedDecision {
    LoggedDecision {
        action: Action::Deny,
        reason: Reason::UnknownUser,
        policy_id: None,
        user_id: None,
        ..decision(user, time_ms, tool)
    }
}

/// Sets its flag when dropped, so a thread looping until the flag stops however the test ends
/// (a panic included) and a scope waiting for it does not hang.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
