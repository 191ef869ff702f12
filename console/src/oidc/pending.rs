//! Sign-ins in progress: what the callback needs (the PKCE verifier and the nonce), found by
//! the `state` sent to the provider and taken out on first use (a replayed callback finds
//! nothing). Each is bound to the browser that started it: the callback must bring the cookie
//! whose value's SHA-256 is stored here, so a callback URL carried to another browser (login
//! CSRF: signing someone in as the attacker) is refused. Short-lived and bounded in number.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long a sign-in may take at the provider.
pub(crate) const LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Sign-ins in progress held at once; past it the oldest is dropped.
const MAX: usize = 10_000;

/// One sign-in in progress.
#[derive(Debug)]
pub(crate) struct Login {
    pub verifier: String,
    pub nonce: String,
    /// The console page to open once signed in (checked by `view::return_path`).
    pub then: Option<String>,
    binding: [u8; 32],
    started: Instant,
}

/// Why a callback found no sign-in to finish.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Unknown state: never started, already used, expired, or dropped at the cap.
    Unknown,
    /// Started, but by another browser (or its cookie is gone).
    OtherBrowser,
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    table: Mutex<HashMap<String, Login>>,
}

impl Pending {
    /// Holds a sign-in under `state`, bound to the browser holding `binding`.
    pub fn insert(
        &self,
        state: String,
        binding: &str,
        verifier: String,
        nonce: String,
        then: Option<String>,
    ) {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= MAX {
            table.retain(|_, login| now.duration_since(login.started) < LIFETIME);
        }
        if table.len() >= MAX {
            let oldest = table
                .iter()
                .min_by_key(|(_, login)| login.started)
                .map(|(state, _)| state.clone());
            if let Some(state) = oldest {
                table.remove(&state);
            }
        }
        table.insert(
            state,
            Login {
                verifier,
                nonce,
                then,
                binding: Sha256::digest(binding.as_bytes()).into(),
                started: now,
            },
        );
    }

    /// Takes the sign-in of `state` out (whatever the outcome: one try per sign-in), if it is
    /// alive and `binding` is its browser's cookie.
    pub fn take(&self, state: &str, binding: Option<&str>) -> Result<Login, Refused> {
        let login = {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            table.remove(state).ok_or(Refused::Unknown)?
        };
        if login.started.elapsed() >= LIFETIME {
            return Err(Refused::Unknown);
        }
        let presented: [u8; 32] = Sha256::digest(binding.unwrap_or("").as_bytes()).into();
        if binding.is_none_or(str::is_empty) || !bool::from(presented.ct_eq(&login.binding)) {
            return Err(Refused::OtherBrowser);
        }
        Ok(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_is_taken_once_by_its_own_browser() {
        let pending = Pending::default();
        pending.insert("s1".into(), "cookie-1", "v".into(), "n".into(), None);
        pending.insert("s2".into(), "cookie-2", "v".into(), "n".into(), None);
        assert_eq!(
            pending.take("s1", Some("cookie-2")).unwrap_err(),
            Refused::OtherBrowser
        );
        assert_eq!(
            pending.take("s1", Some("cookie-1")).unwrap_err(),
            Refused::Unknown,
            "a refused try used it up"
        );
        assert_eq!(pending.take("s2", None).unwrap_err(), Refused::OtherBrowser);
        let then = Some("/console/approvals/apr_1".to_owned());
        pending.insert("s3".into(), "cookie-3", "v3".into(), "n3".into(), then);
        let login = pending.take("s3", Some("cookie-3")).unwrap();
        assert_eq!(
            (login.verifier.as_str(), login.nonce.as_str()),
            ("v3", "n3")
        );
        assert_eq!(login.then.as_deref(), Some("/console/approvals/apr_1"));
        assert_eq!(
            pending.take("s3", Some("cookie-3")).unwrap_err(),
            Refused::Unknown,
            "replayed"
        );
    }
}
