//! Who is calling: the bearer token on every call, the user behind it, and the roles they hold.
//!
//! A caller's roles are the union of its groups' roles and the token's own role. Admin may do
//! everything, Read Only may list and get. A refusal of a caller whose token is valid (a locked
//! or inactive user, no role, a Read Only caller writing) is audited (`auth.denied`), without the
//! secret; one without a valid token (missing, malformed, unknown, revoked, expired, its user
//! gone) names no one we can trust and is counted and logged at a bounded rate instead
//! (`live::refusals`), so that nobody can fill the audit log from outside.

use crate::{Error, Result, clock, token};
use live::Live;
use live::refusals::{Port, Reason};
use pdp::{Role, UserStatus};
use std::collections::BTreeMap;
use store::{AuditEvent, View};
use tonic::Request;
use tonic::metadata::MetadataMap;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub token_id: String,
    /// Each role held, with where it comes from: group ids, or `token` for the token's own.
    pub roles: BTreeMap<Role, Vec<String>>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.roles.contains_key(&Role::Admin)
    }

    /// The audit event for an action by this caller.
    pub(crate) fn event(&self, action: &str, target_kind: &str, target_id: &str) -> AuditEvent {
        AuditEvent {
            time: clock::now(),
            actor: self.user_id.clone(),
            via: Some(self.token_id.clone()),
            action: action.into(),
            target_kind: target_kind.into(),
            target_id: target_id.into(),
            outcome: "ok".into(),
            ..AuditEvent::default()
        }
    }
}

/// A person signed in to the admin console, on the calls the console makes in process: a
/// request extension. tonic fills a request's extensions only in process, never from the wire,
/// so no client can present one. The user is checked on every call as a token's user is (a
/// locked or inactive user is refused at once), and their roles are their groups' roles.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub user_id: String,
    /// The session's public handle (not its secret): what the audit log names as `via`.
    pub handle: String,
}

/// Authenticates a call to `method` and checks the caller may make it (`write`: Admin only).
pub(crate) fn authorize<T>(
    live: &Live,
    request: &Request<T>,
    method: &str,
    write: bool,
) -> Result<Caller> {
    let caller = authenticate(live, request, method)?;
    let refuse =
        |error: Error| refused(live, &caller.user_id, Some(&caller.token_id), method, error);
    if caller.roles.is_empty() {
        let error = Error::PermissionDenied(format!(
            "user `{}` holds no admin role (Admin or Read Only)",
            caller.user_id
        ));
        return Err(refuse(error));
    }
    if write && !caller.is_admin() {
        let error = Error::PermissionDenied(format!(
            "{method} changes data and needs the Admin role; user `{}` is Read Only",
            caller.user_id
        ));
        return Err(refuse(error));
    }
    Ok(caller)
}

/// Audits a refusal of a caller whose token is valid, and returns `error`.
pub(crate) fn refused(
    live: &Live,
    actor: &str,
    via: Option<&str>,
    method: &str,
    error: Error,
) -> Error {
    let event = AuditEvent {
        time: clock::now(),
        actor: actor.to_owned(),
        via: via.map(str::to_owned),
        action: "auth.denied".into(),
        target_kind: "api".into(),
        target_id: method.to_owned(),
        outcome: "denied".into(),
        detail: error.to_string(),
        ..AuditEvent::default()
    };
    if let Err(e) = live.store().append_audit(event) {
        tracing::warn!(error = %e, "cannot audit a refused admin call");
    }
    error
}

/// Authenticates a call to `method`: a console session ([`ConsoleSession`]) or a valid,
/// unrevoked, unexpired token, whose user exists and is active. Holding no role is no refusal
/// here: approvers need not administer anything.
pub(crate) fn authenticate<T>(live: &Live, request: &Request<T>, method: &str) -> Result<Caller> {
    match request.extensions().get::<ConsoleSession>() {
        Some(session) => authenticate_session(live, session, method),
        None => authenticate_token(live, request.metadata(), method),
    }
}

/// A console session's user, checked now.
fn authenticate_session(live: &Live, session: &ConsoleSession, method: &str) -> Result<Caller> {
    let via = format!("console:{}", session.handle);
    let view = live.view()?;
    let Some(user) = view.user(&session.user_id) else {
        live.refusals()
            .refuse(Port::Admin, Reason::UserGone, method);
        return Err(Error::Unauthenticated(format!(
            "user `{}` no longer exists",
            session.user_id
        )));
    };
    active(live, user, &via, method)?;
    Ok(Caller {
        user_id: user.id.clone(),
        email: user.email().to_owned(),
        display_name: user.display_name.clone(),
        token_id: via,
        roles: roles_of(&view, &user.id),
    })
}

/// Refuses (and audits) a caller whose user is locked or inactive.
fn active(live: &Live, user: &pdp::User, via: &str, method: &str) -> Result<()> {
    let error = match user.status() {
        UserStatus::Active => return Ok(()),
        UserStatus::Locked => Error::PermissionDenied(format!("user `{}` is locked", user.id)),
        UserStatus::Inactive => Error::PermissionDenied(format!("user `{}` is inactive", user.id)),
    };
    Err(refused(live, &user.id, Some(via), method, error))
}

/// A token's caller.
fn authenticate_token(live: &Live, metadata: &MetadataMap, method: &str) -> Result<Caller> {
    // A caller we cannot name is counted and logged at a bounded rate, not audited (see
    // `live::refusals`); a caller whose token is valid is audited below.
    let unknown = |reason: Reason, error: Error| {
        live.refusals().refuse(Port::Admin, reason, method);
        error
    };
    let Some(secret) = bearer(metadata) else {
        return Err(unknown(
            Reason::Missing,
            Error::Unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`".into(),
            ),
        ));
    };
    let invalid = || Error::Unauthenticated("invalid token".into());
    let Some(token_id) = token::id_of(secret) else {
        return Err(unknown(Reason::Malformed, invalid()));
    };
    let stored = match live.store().get_token(token_id) {
        Ok(Some(stored)) if token::verify(&stored, secret) => stored,
        Ok(_) => return Err(unknown(Reason::Unknown, invalid())),
        Err(store::Error::InvalidId { .. }) => return Err(unknown(Reason::Malformed, invalid())),
        Err(e) => return Err(e.into()),
    };
    if stored.revoked_at.is_some() {
        let error = Error::Unauthenticated(format!("token `{}` was revoked", stored.id));
        return Err(unknown(Reason::Revoked, error));
    }
    if !stored.usable_at(clock::now()) {
        let error = Error::Unauthenticated(format!("token `{}` has expired", stored.id));
        return Err(unknown(Reason::Expired, error));
    }
    let view = live.view()?;
    let Some(user) = view.user(&stored.user_id) else {
        let error = Error::Unauthenticated(format!(
            "the user of token `{}` no longer exists",
            stored.id
        ));
        return Err(unknown(Reason::UserGone, error));
    };
    active(live, user, token_id, method)?;
    let mut roles = roles_of(&view, &user.id);
    if let Some(role) = stored.role {
        roles.entry(role).or_default().push("token".into());
    }
    Ok(Caller {
        user_id: user.id.clone(),
        email: user.email().to_owned(),
        display_name: user.display_name.clone(),
        token_id: stored.id.clone(),
        roles,
    })
}

/// A user's roles with the groups each comes from.
pub(crate) fn roles_of(view: &View, user_id: &str) -> BTreeMap<Role, Vec<String>> {
    let mut roles: BTreeMap<Role, Vec<String>> = BTreeMap::new();
    for (group_id, _) in view.groups_of(user_id) {
        if let Some(entry) = view.group(group_id) {
            for &role in &entry.group.roles {
                let from = roles.entry(role).or_default();
                if !from.iter().any(|g| **g == **group_id) {
                    from.push(group_id.to_string());
                }
            }
        }
    }
    roles
}

/// The secret in `authorization: Bearer <secret>` ([`pdp_service::secret::bearer`]).
pub(crate) fn bearer(metadata: &MetadataMap) -> Option<&str> {
    pdp_service::secret::bearer(metadata.get("authorization")?.to_str().ok()?)
}

/// Who the company's identity provider says signed in to the console: from a validated ID
/// token.
#[derive(Debug, Clone)]
pub struct ProviderIdentity {
    /// The provider (`iss`), for the audit log.
    pub issuer: String,
    /// The provider's id of the person (`sub`): matched as an external id.
    pub subject: String,
    /// Their email, only when the provider does not say it is unverified.
    pub email: Option<String>,
}

/// The method name console sign-ins are refused and counted under.
const SIGN_IN: &str = "ConsoleSignIn";

/// Matches a person the identity provider signed in to one directory user, and lets them in
/// only if that user is active (neither locked nor inactive), with or without a role: a person
/// with none sees only their approvals. Returns the user's id; the console then starts a
/// session `console:<handle>` for it.
///
/// The subject is tried as an external id and the email as an email, each by the directory's
/// one resolution rule (`store::View::resolve_user`). The subject wins when it names one user,
/// unless the email names a different one (the two claims disagree: refused); otherwise the
/// email must name exactly one user. A reference several users share names nobody. The
/// sign-in is audited (`console.sign_in`), and so is the refusal of a user we could name
/// (`auth.denied`); a person we cannot name is counted like an unknown token, not audited.
pub fn sign_in_with_provider(
    live: &Live,
    identity: &ProviderIdentity,
    handle: &str,
) -> Result<String> {
    let view = live.view()?;
    let by_subject = resolve(&view, Some(&identity.subject));
    let by_email = resolve(&view, identity.email.as_deref());
    let who = || match &identity.email {
        Some(email) => format!("subject `{}`, email `{email}`", identity.subject),
        None => format!("subject `{}`, no verified email", identity.subject),
    };
    let user = match (by_subject, by_email) {
        (Match::One(a), Match::One(b)) if a.id != b.id => {
            live.refusals()
                .refuse(Port::Admin, Reason::Unknown, SIGN_IN);
            return Err(Error::PermissionDenied(format!(
                "the identity provider's subject and email name different users ({}): ask an \
                 administrator to correct the directory",
                who()
            )));
        }
        (Match::One(user), _) | (Match::Nobody, Match::One(user)) => user,
        (Match::Several, _) | (Match::Nobody, Match::Several) => {
            live.refusals()
                .refuse(Port::Admin, Reason::Unknown, SIGN_IN);
            return Err(Error::PermissionDenied(format!(
                "several directory users match this sign-in ({}): ask an administrator to make \
                 the email or external id unique",
                who()
            )));
        }
        (Match::Nobody, Match::Nobody) => {
            live.refusals()
                .refuse(Port::Admin, Reason::Unknown, SIGN_IN);
            return Err(Error::PermissionDenied(format!(
                "no directory user matches this sign-in ({})",
                who()
            )));
        }
    };
    let via = format!("console:{handle}");
    // Holding no role is no refusal: approvers sign in to approve what flows name them for,
    // as they may with a token; the admin services refuse them everything else.
    active(live, user, &via, SIGN_IN)?;
    let event = AuditEvent {
        time: clock::now(),
        actor: user.id.clone(),
        via: Some(via),
        action: "console.sign_in".into(),
        target_kind: "user".into(),
        target_id: user.id.clone(),
        outcome: "ok".into(),
        detail: format!("identity provider `{}`, {}", identity.issuer, who()),
        ..AuditEvent::default()
    };
    live.store().append_audit(event)?;
    Ok(user.id.clone())
}

/// What one claim names in the directory.
enum Match<'a> {
    One(&'a pdp::User),
    Several,
    Nobody,
}

fn resolve<'a>(view: &'a View, reference: Option<&str>) -> Match<'a> {
    let Some(reference) = reference.map(str::trim).filter(|r| !r.is_empty()) else {
        return Match::Nobody;
    };
    match view.resolve_user(reference) {
        pdp::identity::Resolved::User(user) => Match::One(user),
        pdp::identity::Resolved::Ambiguous => Match::Several,
        pdp::identity::Resolved::Unknown => Match::Nobody,
    }
}
