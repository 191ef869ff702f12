//! Calls refused for want of a valid credential, on the SCIM and admin ports: counted and logged
//! at a bounded rate, never stored.
//!
//! Anyone who can reach a port can send a request without a token, or with a made-up, revoked or
//! expired one, as fast as the network allows. Appending an audit event for each (with the
//! request's path, up to ~64 KB) let 2,000 such requests grow the store by 188 MB in 2 seconds
//! and bury the real events. Such a refusal names no one we know, so it is worth a counter
//! (`portcullis_auth_refusals_total{port, reason}`, read by the binary's metrics at each
//! scrape) and a WARN line at most once per [`LOG_EVERY`] per port, with how many were
//! suppressed since the last line and the path cut to [`PATH_SHOWN`] bytes; never the token.
//! Refusals of a caller whose token is valid (no role, a Read Only caller writing, a locked
//! user) name a real actor and stay in the audit log, bounded by its retention.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one log line per port this often.
pub const LOG_EVERY: Duration = Duration::from_secs(1);
/// The most bytes of a refused request's path a log line shows.
pub const PATH_SHOWN: usize = 256;

/// Where a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The SCIM endpoint on the HTTP port.
    Scim,
    /// AdminService on the gRPC port.
    Admin,
}

impl Port {
    pub const ALL: [Port; 2] = [Port::Scim, Port::Admin];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Port::Scim => "scim",
            Port::Admin => "admin",
        }
    }
}

/// Why a call was refused without knowing who made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Something that is not a token of this port's kind.
    Malformed,
    /// A token no one issued, or a real token id with the wrong secret.
    Unknown,
    Revoked,
    Expired,
    /// The token is valid but its user no longer exists (admin only).
    UserGone,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Unknown,
        Reason::Revoked,
        Reason::Expired,
        Reason::UserGone,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Unknown => "unknown",
            Reason::Revoked => "revoked",
            Reason::Expired => "expired",
            Reason::UserGone => "user_gone",
        }
    }
}

const PORTS: usize = Port::ALL.len();
const REASONS: usize = Reason::ALL.len();

/// The refusal counters and the log's rate limit; one per process, shared through
/// [`crate::Live::refusals`].
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [[AtomicU64; REASONS]; PORTS],
    logs: [Mutex<Logged>; PORTS],
}

/// The rate limit of one port's log lines.
#[derive(Debug, Default)]
struct Logged {
    last: Option<Instant>,
    /// Refusals since `last` that were not logged.
    suppressed: u64,
}

impl Refusals {
    /// Counts a refusal of a call to `path` (a SCIM path, an admin method) and logs it unless
    /// a line for this port was logged less than [`LOG_EVERY`] ago.
    pub fn refuse(&self, port: Port, reason: Reason, path: &str) {
        self.counts[port as usize][reason as usize].fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let suppressed = {
            // A poisoned lock only means a panic elsewhere mid-update: the counts stay right.
            let mut logged = self.logs[port as usize]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if logged
                .last
                .is_some_and(|last| now.duration_since(last) < LOG_EVERY)
            {
                logged.suppressed += 1;
                return;
            }
            logged.last = Some(now);
            std::mem::take(&mut logged.suppressed)
        };
        tracing::warn!(
            port = port.name(),
            reason = reason.name(),
            path = %shown(path),
            path_bytes = path.len(),
            suppressed,
            "refused a call without valid credentials (more are counted in portcullis_auth_refusals_total, not logged)"
        );
    }

    /// How many refusals of this kind so far.
    pub fn count(&self, port: Port, reason: Reason) -> u64 {
        self.counts[port as usize][reason as usize].load(Ordering::Relaxed)
    }
}

/// At most [`PATH_SHOWN`] bytes of `path` (cut at a character boundary), escaped so that no
/// control character reaches the log.
fn shown(path: &str) -> String {
    let mut end = path.len().min(PATH_SHOWN);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = path[..end].escape_debug().to_string();
    if end < path.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_and_escaped() {
        assert_eq!(shown("/scim/v2/Users"), "/scim/v2/Users");
        let long = format!("/{}", "é".repeat(300));
        let cut = shown(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= PATH_SHOWN + '…'.len_utf8());
        assert_eq!(shown("/a\nb"), "/a\\nb");
    }

    #[test]
    fn refusals_are_counted_by_port_and_reason() {
        let refusals = Refusals::default();
        for _ in 0..3 {
            refusals.refuse(Port::Scim, Reason::Unknown, "/scim/v2/Users");
        }
        refusals.refuse(Port::Admin, Reason::Missing, "ListUsers");
        assert_eq!(refusals.count(Port::Scim, Reason::Unknown), 3);
        assert_eq!(refusals.count(Port::Admin, Reason::Missing), 1);
        assert_eq!(refusals.count(Port::Admin, Reason::Unknown), 0);
        // The first was logged; the next two fell within LOG_EVERY.
        let logged = refusals.logs[Port::Scim as usize].lock().unwrap();
        assert_eq!(logged.suppressed, 2);
    }
}
