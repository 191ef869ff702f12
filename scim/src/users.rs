//! `/Users`: the mapping between a SCIM user document and [`pdp::User`], and its handlers.
//!
//! The document a client sent (or patched) is kept whole, minus what the server assigns (`id`,
//! `meta`) and what it never keeps (`password`; `groups`, which memberships answer), so
//! attributes and extensions the model has no place for round-trip. The model is derived from
//! it. Rendering starts from the kept document (or, for users imported in bulk, one built from
//! the model) and writes the model's current value over every mapped attribute that differs.

use crate::handlers::{Kind, Writing, current_matching};
use crate::http::Ctx;
use crate::resource::{self, Ref};
use crate::schema::{self, Resource};
use crate::write::{self, Commit, write};
use crate::{Result, Scim, ScimError, clock, json, list};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pdp::{Mfa, Timestamp, User};
use pdp_service::secret::random_hex;
use serde_json::{Map, Value, json};
use store::{ScimKind, Store, View};

/// The extensions of User the server knows.
const EXTENSIONS: &[&str] = &[schema::ENTERPRISE_USER, schema::PORTCULLIS_USER];

/// The attributes of a SCIM user the model keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub user_name: String,
    pub external_id: Option<String>,
    /// The primary first.
    pub emails: Vec<String>,
    pub display_name: String,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub avatar_url: Option<String>,
    pub active: bool,
    pub mfa: Mfa,
    /// The enterprise extension's `manager.value`: the manager's id.
    pub manager: Option<String>,
}

/// Longest manager reference kept, in bytes (a user id is far shorter).
const MAX_MANAGER: usize = 1024;

/// The enterprise extension's `manager`: `{"value": id}` (or a bare id, as some IdPs send
/// it); absent, null or an empty id is none.
fn manager(doc: &Value) -> Result<Option<String>> {
    let urn = schema::ENTERPRISE_USER;
    let extension = match json::get(doc, urn).filter(|e| !e.is_null()) {
        None => return Ok(None),
        Some(extension) if extension.is_object() => extension,
        Some(_) => {
            return Err(ScimError::invalid_value(format!(
                "`{urn}` must be an object"
            )));
        }
    };
    let field = format!("{urn}:manager");
    let manager = match json::get(extension, "manager") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()).filter(|id| !id.is_empty()),
        Some(manager @ Value::Object(_)) => {
            resource::string(manager, "value", &format!("{field}.value"))?
        }
        Some(_) => {
            return Err(ScimError::invalid_value(format!(
                "`{field}` must be an object with a `value`"
            )));
        }
    };
    if let Some(id) = &manager
        && (id.len() > MAX_MANAGER || id.contains('\0'))
    {
        return Err(ScimError::invalid_value(format!(
            "`{field}.value` is not a user id"
        )));
    }
    Ok(manager)
}

/// The `value`s of a multi-valued attribute, the primary one first.
fn values(doc: &Value, key: &str) -> Result<Vec<String>> {
    let mut primary = Vec::new();
    let mut rest = Vec::new();
    for (i, item) in resource::items(doc, key, key)?.into_iter().enumerate() {
        let field = format!("{key}[{i}]");
        let value = match item {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Object(_) => resource::string(item, "value", &format!("{field}.value"))?,
            _ => None,
        };
        let Some(value) = value else { continue };
        let is_primary =
            resource::boolean(json::get(item, "primary"), &format!("{field}.primary"))?
                .unwrap_or(false);
        if is_primary && primary.is_empty() {
            primary.push(value);
        } else {
            rest.push(value);
        }
    }
    primary.extend(rest);
    Ok(primary)
}

impl Mapped {
    /// The model's attributes from a document; 400 `invalidValue` for a missing `userName` or
    /// a mapped attribute of the wrong type.
    pub fn from_doc(doc: &Value) -> Result<Mapped> {
        let user_name = resource::string(doc, "userName", "userName")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("`userName` is required"))?;
        let external_id = resource::string(doc, "externalId", "externalId")?;
        // Each once, ignoring ASCII case: a set, not a scan of those kept (quadratic).
        let mut seen = std::collections::HashSet::new();
        let mut emails: Vec<String> = Vec::new();
        for email in values(doc, "emails")? {
            if seen.insert(email.to_ascii_lowercase()) {
                emails.push(email);
            }
        }
        let name = json::get(doc, "name").filter(|n| !n.is_null());
        if let Some(name) = name
            && !name.is_object()
        {
            return Err(ScimError::invalid_value("`name` must be an object"));
        }
        let name_part = |key: &str| match name {
            Some(name) => resource::string(name, key, &format!("name.{key}")),
            None => Ok(None),
        };
        let given_name = name_part("givenName")?;
        let family_name = name_part("familyName")?;
        let formatted = name_part("formatted")?;
        let joined = [given_name.as_deref(), family_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let display_name = resource::string(doc, "displayName", "displayName")?
            .or(formatted)
            .or_else(|| (!joined.trim().is_empty()).then(|| joined.trim().to_owned()))
            .unwrap_or_else(|| user_name.clone());
        let avatar_url = values(doc, "photos")?.into_iter().next();
        let active = resource::boolean(json::get(doc, "active"), "active")?.unwrap_or(true);
        let mfa = match json::get(doc, schema::PORTCULLIS_USER).filter(|e| !e.is_null()) {
            None => Mfa::Unknown,
            Some(extension) if extension.is_object() => {
                let field = format!("{}:mfaEnabled", schema::PORTCULLIS_USER);
                Mfa::from(resource::boolean(
                    json::get(extension, "mfaEnabled"),
                    &field,
                )?)
            }
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "`{}` must be an object",
                    schema::PORTCULLIS_USER
                )));
            }
        };
        Ok(Mapped {
            user_name,
            external_id,
            emails,
            display_name,
            given_name,
            family_name,
            avatar_url,
            active,
            mfa,
            manager: manager(doc)?,
        })
    }

    pub fn from_user(user: &User) -> Mapped {
        Mapped {
            user_name: user.user_name.clone(),
            external_id: user.external_id.clone(),
            emails: user.emails.clone(),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            family_name: user.family_name.clone(),
            avatar_url: user.avatar_url.clone(),
            active: user.active,
            mfa: user.mfa,
            manager: user.manager.clone(),
        }
    }

    /// The model user: these attributes (the manager too: a document without one clears it),
    /// with what SCIM never sets (the lock, the creation time) kept from `existing`.
    pub fn to_user(&self, id: &str, existing: Option<&User>, now: Timestamp) -> User {
        User {
            id: id.to_owned(),
            external_id: self.external_id.clone(),
            user_name: self.user_name.clone(),
            emails: self.emails.clone(),
            display_name: self.display_name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            avatar_url: self.avatar_url.clone(),
            active: self.active,
            lock: existing.and_then(|u| u.lock.clone()),
            mfa: self.mfa,
            manager: self.manager.clone(),
            created_at: existing.map_or(now, |u| u.created_at),
            updated_at: now,
        }
    }
}

/// A client's document as it is kept: an object without `id`, `meta`, `groups` (read-only:
/// memberships answer it) and `password` (never kept), with `active` and `mfaEnabled` as
/// booleans.
pub fn normalize(body: Value) -> Result<Map<String, Value>> {
    let mut doc = resource::object(body)?;
    json::remove(&mut doc, "groups");
    json::remove(&mut doc, "password");
    if let Some(active) = resource::boolean(json::field(&doc, "active"), "active")? {
        json::set(&mut doc, "active", Value::Bool(active));
    } else {
        json::remove(&mut doc, "active");
    }
    let urn = schema::PORTCULLIS_USER;
    if json::field(&doc, urn).is_some_and(Value::is_object) {
        let field = format!("{urn}:mfaEnabled");
        json::with_object(&mut doc, urn, |extension| {
            let mfa = resource::boolean(json::field(extension, "mfaEnabled"), &field)?;
            match mfa {
                Some(mfa) => json::set(extension, "mfaEnabled", Value::Bool(mfa)),
                None => {
                    json::remove(extension, "mfaEnabled");
                }
            }
            Ok::<_, ScimError>(())
        })?;
    }
    resource::sync_schemas(&mut doc, schema::USER, EXTENSIONS);
    Ok(doc)
}

/// The document of a user that has none (imported in bulk, not over SCIM).
fn built(user: &User) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("schemas".into(), json!([schema::USER]));
    doc.insert("userName".into(), Value::String(user.user_name.clone()));
    // No client document: the model's values are the user's, optional ones included.
    doc.insert(
        "displayName".into(),
        Value::String(user.display_name.clone()),
    );
    doc.insert("active".into(), Value::Bool(user.active));
    write_mapped(&mut doc, user, None);
    doc
}

/// Writes the model's value of every mapped attribute over the document's: simple ones always,
/// complex ones (`emails`, `name`, `photos`, the MFA extension) where they differ (`known`:
/// what the document maps to, if it maps at all).
fn write_mapped(doc: &mut Map<String, Value>, user: &User, known: Option<&Mapped>) {
    let want = Mapped::from_user(user);
    let same = |pick: &dyn Fn(&Mapped) -> bool| known.is_some_and(pick);
    // Simple attributes: always the model's.
    json::set(doc, "userName", Value::String(want.user_name.clone()));
    match &want.external_id {
        Some(external) => json::set(doc, "externalId", Value::String(external.clone())),
        None => {
            json::remove(doc, "externalId");
        }
    }
    // `displayName` and `active` are optional (RFC 7643 §4.1): the model fills in what a
    // document leaves out (a display name from `name` or `userName`; active), but the document
    // shows them only when the client sent them, so a PATCH `remove` removes them.
    if json::field(doc, "displayName").is_some_and(|v| !v.is_null()) {
        if want.display_name.is_empty() {
            json::remove(doc, "displayName");
        } else {
            json::set(doc, "displayName", Value::String(want.display_name.clone()));
        }
    }
    if json::field(doc, "active").is_some_and(|v| !v.is_null()) {
        json::set(doc, "active", Value::Bool(want.active));
    }
    // Complex ones only where they differ, so what else the client put in them stays.
    if !same(&|m| m.emails == want.emails) {
        json::remove(doc, "emails");
        if !want.emails.is_empty() {
            let emails = want
                .emails
                .iter()
                .enumerate()
                .map(|(i, e)| json!({"value": e, "type": "work", "primary": i == 0}))
                .collect();
            doc.insert("emails".into(), Value::Array(emails));
        }
    }
    if !same(&|m| m.given_name == want.given_name && m.family_name == want.family_name) {
        json::with_object(doc, "name", |name| {
            for (key, value) in [
                ("givenName", &want.given_name),
                ("familyName", &want.family_name),
            ] {
                match value {
                    Some(value) => json::set(name, key, Value::String(value.clone())),
                    None => {
                        json::remove(name, key);
                    }
                }
            }
        });
    }
    if !same(&|m| m.avatar_url == want.avatar_url) {
        json::remove(doc, "photos");
        if let Some(url) = &want.avatar_url {
            doc.insert(
                "photos".into(),
                json!([{"value": url, "type": "photo", "primary": true}]),
            );
        }
    }
    if !same(&|m| m.manager == want.manager) {
        write_manager(doc, want.manager.as_deref());
    }
    if !same(&|m| m.mfa == want.mfa) {
        let urn = schema::PORTCULLIS_USER;
        let enabled = match want.mfa {
            Mfa::Enabled => Some(true),
            Mfa::Disabled => Some(false),
            Mfa::Unknown => None,
        };
        json::with_object(doc, urn, |extension| match enabled {
            Some(enabled) => json::set(extension, "mfaEnabled", Value::Bool(enabled)),
            None => {
                json::remove(extension, "mfaEnabled");
            }
        });
    }
}

/// Writes the model's manager over the document's enterprise `manager` (its other
/// sub-attributes, such as `displayName`, stay while the id does).
fn write_manager(doc: &mut Map<String, Value>, manager: Option<&str>) {
    let urn = schema::ENTERPRISE_USER;
    if manager.is_none() && json::field(doc, urn).is_none() {
        return;
    }
    json::with_object(doc, urn, |extension| match manager {
        Some(id) => json::set(extension, "manager", json!({"value": id})),
        None => {
            json::remove(extension, "manager");
        }
    });
}

/// The user as SCIM shows it, with `meta` and its version.
pub fn render(user: &User, stored: Option<&Value>, groups: &[Ref], base: &str) -> Value {
    let mut doc = match stored {
        Some(Value::Object(doc)) => {
            let known = Mapped::from_doc(&Value::Object(doc.clone())).ok();
            let mut doc = doc.clone();
            write_mapped(&mut doc, user, known.as_ref());
            doc
        }
        _ => built(user),
    };
    json::remove(&mut doc, "password");
    resource::sync_schemas(&mut doc, schema::USER, EXTENSIONS);
    resource::refs(&mut doc, "groups", groups);
    resource::finish(
        doc,
        Resource::User,
        &user.id,
        user.created_at,
        user.updated_at,
        base,
    )
}

/// Refuses identifiers that would hide or imitate (see [`pdp::identity::check`]), and a
/// `userName` or `externalId` a reference to which would also name a user other than `except`
/// (see [`View::identifier_taken`]): such a reference would otherwise become ambiguous, or
/// resolve to the newcomer instead of the person an administrator meant.
fn unique(view: &View, mapped: &Mapped, except: Option<&str>) -> Result<()> {
    let checked = |attribute: &str, value: &str| {
        pdp::identity::check(value)
            .map_err(|problem| ScimError::invalid_value(format!("`{attribute}` {problem}")))
    };
    checked("userName", &mapped.user_name)?;
    if let Some(external) = &mapped.external_id {
        checked("externalId", external)?;
    }
    for email in &mapped.emails {
        checked("emails", email)?;
    }
    match view.identifier_taken(&mapped.user_name, mapped.external_id.as_deref(), except) {
        Some(taken) => Err(ScimError::uniqueness(taken.to_string())),
        None => Ok(()),
    }
}

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("user `{id}` not found"))
}

/// A user as it is: the record and its stored document.
type Before = (User, Option<Value>);

/// The `/Users` resource type.
pub struct Users;

impl Kind for Users {
    const RESOURCE: Resource = Resource::User;
    type Doc = Map<String, Value>;
    type Before = Before;

    fn normalize(body: Value) -> Result<Map<String, Value>> {
        normalize(body)
    }

    fn current(store: &Store, view: &View, id: &str, base: &str) -> Result<(Before, Value)> {
        let user = view
            .user(id)
            .map(|u| User::clone(u))
            .ok_or_else(|| not_found(id))?;
        let stored = store.get_scim(ScimKind::User, id)?;
        let rendered = render(
            &user,
            stored.as_ref(),
            &resource::user_groups(view, id),
            base,
        );
        Ok(((user, stored), rendered))
    }

    /// Every create, replace and patch of a user passes here, outside the write lock: the
    /// document is checked against the limits, mapped, checked for uniqueness, and the write
    /// prepared. `before` is the user as it is and its stored document (`None`: a new user).
    /// Returns what the commit writes (nothing when nothing changed) and answers.
    fn prepare(
        w: Writing<'_>,
        before: Option<Before>,
        doc: Map<String, Value>,
    ) -> Result<Commit<Value>> {
        w.limits.check_user(&doc)?;
        let doc = Value::Object(doc);
        let mapped = Mapped::from_doc(&doc)?;
        let now = clock::now();
        let Some((before, stored)) = before else {
            unique(w.view, &mapped, None)?;
            let mut id = random_hex(16)?;
            // 128 random bits: a collision is all but impossible, but never overwrite (the view
            // is exactly what the commit will see).
            while w.view.user(&id).is_some() {
                id = random_hex(16)?;
            }
            let user = mapped.to_user(&id, None, now);
            let rendered = render(&user, Some(&doc), &[], &w.ctx.base);
            let mut event = w.ctx.caller.event(w.action, "user", &id);
            event.detail = format!("userName `{}`", user.user_name);
            event.after = resource::audit_json(&user);
            let mut kept_event = w.ctx.caller.event("user.lock.kept", "user", &id);
            return Ok(Box::new(move |tx| {
                let mut user = user;
                // A person the identity provider deleted while locked, created again: still
                // locked.
                let kept = tx.take_kept_lock(&user.user_name, user.external_id.as_deref())?;
                if let Some(kept) = &kept {
                    user.lock = Some(kept.lock.clone());
                }
                tx.put_user(&user)?;
                tx.put_scim(ScimKind::User, &user.id, &doc)?;
                event.time = clock::now();
                tx.audit(event)?;
                if let Some(kept) = kept {
                    kept_event.time = clock::now();
                    kept_event.detail = format!(
                        "locked as user `{}` was when deleted (by {}: {}); an administrator unlocks",
                        kept.user_id, kept.lock.by, kept.lock.reason
                    );
                    tx.audit(kept_event)?;
                }
                Ok(rendered)
            }));
        };
        let mut after = mapped.to_user(&before.id, Some(&before), now);
        let groups = resource::user_groups(w.view, &before.id);
        let same_doc = stored.as_ref() == Some(&doc);
        let same_user = User {
            updated_at: before.updated_at,
            ..after.clone()
        } == before;
        if same_doc && same_user {
            // Nothing to change: nothing committed, nothing audited.
            after.updated_at = before.updated_at;
            return Ok(write::nothing(render(
                &after,
                stored.as_ref(),
                &groups,
                &w.ctx.base,
            )));
        }
        unique(w.view, &mapped, Some(&before.id))?;
        let rendered = render(&after, Some(&doc), &groups, &w.ctx.base);
        let mut event = w.ctx.caller.event(w.action, "user", &after.id);
        event.detail = format!("userName `{}`", after.user_name);
        event.before = resource::audit_json(&before);
        event.after = resource::audit_json(&after);
        Ok(Box::new(move |tx| {
            tx.put_user(&after)?;
            tx.put_scim(ScimKind::User, &after.id, &doc)?;
            event.time = clock::now();
            tx.audit(event)?;
            Ok(rendered)
        }))
    }
}

pub async fn delete(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    write(&scim, move |store, view| {
        let if_match = ctx.if_match.as_deref();
        let ((before, _), _) = current_matching::<Users>(store, view, &id, &ctx.base, if_match)?;
        let ctx = ctx.clone();
        Ok(Box::new(move |tx: &mut store::Tx<'_, '_>| {
            let what = format!("userName `{}`", before.user_name);
            resource::delete(tx, &ctx.caller, Resource::User, &before.id, &before, what)?;
            Ok(())
        }) as Commit<()>)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list(State(scim): State<Scim>, ctx: Ctx) -> Result<Response> {
    list::users(scim, ctx).await
}
