//! The console's sessions: who signed in, with what, since when, and the CSRF token of their
//! forms. Held in memory (a restart signs everyone out), bounded in number, each ending after
//! the idle timeout or the absolute lifetime, whichever comes first.
//!
//! A session is found by the SHA-256 of its cookie's secret, so the table never holds a secret
//! a memory dump could replay, and the lookup's timing says nothing about the secret. The
//! person behind a session is checked again on every call the console makes (the admin
//! services authenticate each one): a user locked, made inactive or stripped of their roles
//! loses the console at their next click, and the session is dropped then.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long sessions last, and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub idle: Duration,
    pub lifetime: Duration,
    pub max: usize,
}

/// What a session acts with.
#[derive(Clone)]
pub enum Credential {
    /// Signed in with an admin API token: every call presents it, so its revocation or
    /// expiry ends the session too.
    Token(String),
    /// Signed in through the identity provider as this user (by id).
    User(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(…)"),
            Credential::User(id) => f.debug_tuple("User").field(id).finish(),
        }
    }
}

/// One signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// A public name for the session (never its secret): the audit log's `via`.
    pub handle: String,
    pub credential: Credential,
    /// The token every form of this session carries (the synchronizer token pattern).
    csrf: String,
    created: Instant,
    last_seen: Mutex<Instant>,
}

impl Session {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The sessions of one server.
#[derive(Debug)]
pub struct Sessions {
    limits: Limits,
    table: Mutex<HashMap<[u8; 32], Arc<Session>>>,
}

impl Sessions {
    pub fn new(limits: Limits) -> Sessions {
        Sessions {
            limits,
            table: Mutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Starts a session for `credential`; returns its cookie secret. At the cap, expired
    /// sessions go first, then the least recently used.
    pub fn start(&self, credential: Credential) -> Result<(String, Arc<Session>), RandomFailed> {
        self.start_as(credential, new_handle()?)
    }

    /// [`Sessions::start`] with the public handle chosen before (the identity provider's
    /// sign-in is audited under it before the session exists).
    pub fn start_as(
        &self,
        credential: Credential,
        handle: String,
    ) -> Result<(String, Arc<Session>), RandomFailed> {
        let secret = random()?;
        let now = Instant::now();
        let session = Arc::new(Session {
            handle,
            credential,
            csrf: random()?,
            created: now,
            last_seen: Mutex::new(now),
        });
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= self.limits.max {
            table.retain(|_, s| self.alive(s, now));
        }
        if table.len() >= self.limits.max {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| *s.last_seen.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|(k, _)| *k);
            if let Some(key) = oldest {
                table.remove(&key);
            }
        }
        table.insert(key(&secret), Arc::clone(&session));
        Ok((secret, session))
    }

    /// The live session of this cookie secret, marked as used now; an expired one is dropped.
    pub fn find(&self, secret: &str) -> Option<Arc<Session>> {
        let now = Instant::now();
        let key = key(secret);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let session = table.get(&key)?;
        if !self.alive(session, now) {
            table.remove(&key);
            return None;
        }
        *session.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = now;
        Some(Arc::clone(session))
    }

    /// Ends the session of this cookie secret (sign-out, or its person refused).
    pub fn end(&self, secret: &str) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.remove(&key(secret));
    }

    /// How many sessions are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        let last_seen = *session.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        now.duration_since(session.created) < self.limits.lifetime
            && now.duration_since(last_seen) < self.limits.idle
    }
}

fn key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new session handle: 12 random characters (72 bits), public, never a secret.
pub fn new_handle() -> Result<String, RandomFailed> {
    Ok(random()?[..12].to_owned())
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub(crate) fn random() -> Result<String, RandomFailed> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|_| RandomFailed)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The operating system's random source failed: no session or token can be made.
#[derive(Debug, Clone, Copy)]
pub struct RandomFailed;

impl std::fmt::Display for RandomFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the system random source failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(idle: u64, lifetime: u64, max: usize) -> Sessions {
        Sessions::new(Limits {
            idle: Duration::from_millis(idle),
            lifetime: Duration::from_millis(lifetime),
            max,
        })
    }

    #[test]
    fn a_session_is_found_by_its_secret_only() {
        let sessions = sessions(60_000, 60_000, 10);
        let (secret, session) = sessions.start(Credential::User("u1".into())).unwrap();
        let found = sessions.find(&secret).expect("the session");
        assert!(Arc::ptr_eq(&found, &session));
        assert!(sessions.find("not-the-secret").is_none());
        assert!(session.csrf_matches(session.csrf()));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&secret));
        sessions.end(&secret);
        assert!(sessions.find(&secret).is_none());
    }

    #[test]
    fn sessions_end_when_idle_or_too_old() {
        let idle = sessions(30, 60_000, 10);
        let (secret, _) = idle.start(Credential::User("u1".into())).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(idle.find(&secret).is_none(), "idle past the timeout");

        let old = sessions(60_000, 50, 10);
        let (secret, _) = old.start(Credential::User("u1".into())).unwrap();
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(20));
            let _ = old.find(&secret);
        }
        assert!(old.find(&secret).is_none(), "past the lifetime despite use");
    }

    #[test]
    fn at_the_cap_the_least_recently_used_session_goes() {
        let sessions = sessions(60_000, 60_000, 2);
        let (first, _) = sessions.start(Credential::User("u1".into())).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let (second, _) = sessions.start(Credential::User("u2".into())).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(sessions.find(&first).is_some(), "first used last");
        let (third, _) = sessions.start(Credential::User("u3".into())).unwrap();
        assert_eq!(sessions.len(), 2);
        assert!(
            sessions.find(&second).is_none(),
            "the least recently used went"
        );
        assert!(sessions.find(&first).is_some());
        assert!(sessions.find(&third).is_some());
    }
}
