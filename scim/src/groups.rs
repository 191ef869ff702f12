//! `/Groups`: groups the identity provider manages (`ManagedBy::External`) and their members.
//!
//! The group's document is kept like a user's (minus `id`, `meta` and `members`: members are
//! the store's memberships, source `Idp`). Groups an administrator made here
//! (`ManagedBy::Local`) do not exist for SCIM: 404 by id, absent from lists. What SCIM has no
//! word for (a group's description and admin roles) is kept across SCIM writes.

use crate::handlers::{Kind, Writing, current_matching};
use crate::http::Ctx;
use crate::resource::{self, Ref};
use crate::schema::{self, Resource};
use crate::write::{self, Commit, write};
use crate::{Result, Scim, ScimError, clock, json, list};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pdp::{Group, ManagedBy, Membership, MembershipSource};
use pdp_service::secret::random_hex;
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use store::{ScimKind, Store, View};

/// The attributes of a SCIM group the model keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub display_name: String,
    pub external_id: Option<String>,
}

impl Mapped {
    pub fn from_doc(doc: &Value) -> Result<Mapped> {
        let display_name = resource::string(doc, "displayName", "displayName")?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ScimError::invalid_value("`displayName` is required"))?;
        Ok(Mapped {
            display_name,
            external_id: resource::string(doc, "externalId", "externalId")?,
        })
    }

    /// The model group: these attributes, with what SCIM never sets (description, roles,
    /// creation time) kept from `existing`.
    pub(crate) fn to_group(
        &self,
        id: &str,
        existing: Option<&Group>,
        now: pdp::Timestamp,
    ) -> Group {
        Group {
            id: id.to_owned(),
            external_id: self.external_id.clone(),
            display_name: self.display_name.clone(),
            description: existing.map(|g| g.description.clone()).unwrap_or_default(),
            roles: existing.map(|g| g.roles.clone()).unwrap_or_default(),
            managed_by: ManagedBy::External,
            created_at: existing.map_or(now, |g| g.created_at),
            updated_at: now,
        }
    }
}

/// The member user ids a document lists, in order, each once. Members must be users: nested
/// groups are not supported.
fn members(doc: &Value) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, item) in resource::items(doc, "members", "members")?
        .into_iter()
        .enumerate()
    {
        let field = format!("members[{i}]");
        let id = match item {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Object(_) => resource::string(item, "value", &format!("{field}.value"))?
                .ok_or_else(|| ScimError::invalid_value(format!("`{field}.value` is required")))?,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "`{field}` must be an object with a `value`"
                )));
            }
        };
        if let Some(kind) = resource::string(item, "type", &format!("{field}.type"))?
            && !kind.eq_ignore_ascii_case("user")
        {
            return Err(ScimError::invalid_value(format!(
                "`{field}` is a {kind}: only users can be members (nested groups are not supported)"
            )));
        }
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// A client's document as it is kept, and the members it lists.
pub(crate) fn normalize(body: Value) -> Result<(Map<String, Value>, Vec<String>)> {
    let members = members(&body)?;
    let mut doc = resource::object(body)?;
    json::remove(&mut doc, "members");
    resource::sync_schemas(&mut doc, schema::GROUP, &[]);
    Ok((doc, members))
}

/// The group as SCIM shows it, with `meta` and its version.
pub fn render(group: &Group, stored: Option<&Value>, members: &[Ref], base: &str) -> Value {
    let mut doc = match stored {
        Some(Value::Object(doc)) => doc.clone(),
        _ => {
            let mut doc = Map::new();
            doc.insert("schemas".into(), json!([schema::GROUP]));
            doc
        }
    };
    json::set(
        &mut doc,
        "displayName",
        Value::String(group.display_name.clone()),
    );
    match &group.external_id {
        Some(external) => json::set(&mut doc, "externalId", Value::String(external.clone())),
        None => {
            json::remove(&mut doc, "externalId");
        }
    }
    resource::refs(&mut doc, "members", members);
    resource::finish(
        doc,
        Resource::Group,
        &group.id,
        group.created_at,
        group.updated_at,
        base,
    )
}

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("group `{id}` not found"))
}

/// The group `id` if SCIM may see it (the identity provider manages it).
fn external(group: Option<Group>, id: &str) -> Result<Group> {
    group
        .filter(|g| g.managed_by == ManagedBy::External)
        .ok_or_else(|| not_found(id))
}

/// Refuses an `externalId` another group than `except` has.
fn unique(view: &View, mapped: &Mapped, except: Option<&str>) -> Result<()> {
    if let Some(external) = &mapped.external_id
        && let Some(taken) = view
            .groups_with_external_id(external)
            .find(|e| except != Some(e.group.id.as_str()))
    {
        return Err(ScimError::uniqueness(format!(
            "externalId `{external}` is already taken by group `{}`",
            taken.group.id
        )));
    }
    Ok(())
}

/// Refuses member ids that are not users.
fn check_users(view: &View, ids: &[String]) -> Result<()> {
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| view.user(id).is_none())
        .cloned()
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ScimError::invalid_value(format!(
            "no user with id {}: members must be existing users",
            resource::listed(&unknown, 20)
        )))
    }
}

/// A group as it is: the record, its stored document and its members.
type Before = (Group, Option<Value>, Vec<Ref>);

/// The `/Groups` resource type.
pub struct Groups;

impl Kind for Groups {
    const RESOURCE: Resource = Resource::Group;
    /// The document and the member ids it names.
    type Doc = (Map<String, Value>, Vec<String>);
    type Before = Before;

    fn normalize(body: Value) -> Result<Self::Doc> {
        normalize(body)
    }

    fn current(store: &Store, view: &View, id: &str, base: &str) -> Result<(Before, Value)> {
        let group = external(view.group(id).map(|e| Group::clone(&e.group)), id)?;
        let stored = store.get_scim(ScimKind::Group, id)?;
        let members = resource::group_members(view, id);
        let rendered = render(&group, stored.as_ref(), &members, base);
        Ok(((group, stored, members), rendered))
    }

    /// Every create, replace and patch of a group passes here, outside the write lock: the
    /// document and the membership changes are checked against the limits, mapped, checked for
    /// uniqueness and existing members, and the write prepared: the group and its document if
    /// they changed, and only the memberships added and removed. `before`: `None` for a new
    /// group. Returns what the commit writes (nothing when nothing changed) and answers.
    fn prepare(
        w: Writing<'_>,
        before: Option<Before>,
        (doc, members_after): Self::Doc,
    ) -> Result<Commit<Value>> {
        let (before, members_before) = match before {
            Some((group, stored, members)) => (Some((group, stored)), members),
            None => (None, Vec::new()),
        };
        let was: BTreeSet<&str> = members_before.iter().map(|r| r.id.as_str()).collect();
        let now_set: BTreeSet<&str> = members_after.iter().map(String::as_str).collect();
        let added: Vec<String> = members_after
            .iter()
            .filter(|m| !was.contains(m.as_str()))
            .cloned()
            .collect();
        let removed: Vec<String> = members_before
            .iter()
            .filter(|r| !now_set.contains(r.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        w.limits.check_group(&doc, added.len() + removed.len())?;
        let doc = Value::Object(doc);
        let mapped = Mapped::from_doc(&doc)?;
        let now = clock::now();
        // The members as they will be: those kept, in id order, then those added.
        let mut members: Vec<Ref> = members_before
            .iter()
            .filter(|r| now_set.contains(r.id.as_str()))
            .cloned()
            .collect();
        members.extend(resource::users_by_id(w.view, &added));
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let joined = |group_id: &str| -> Vec<Membership> {
            added
                .iter()
                .map(|user_id| Membership {
                    group_id: group_id.to_owned(),
                    user_id: user_id.clone(),
                    joined_at: now,
                    source: MembershipSource::Idp,
                })
                .collect()
        };
        let Some((before, stored)) = before else {
            unique(w.view, &mapped, None)?;
            check_users(w.view, &added)?;
            let mut id = random_hex(16)?;
            // 128 random bits: a collision is all but impossible, but never overwrite (the view
            // is exactly what the commit will see).
            while w.view.group(&id).is_some() {
                id = random_hex(16)?;
            }
            let group = mapped.to_group(&id, None, now);
            let joined = joined(&id);
            let rendered = render(&group, Some(&doc), &members, &w.ctx.base);
            let mut event = w.ctx.caller.event(w.action, "group", &id);
            event.detail = if added.is_empty() {
                format!("displayName `{}`", group.display_name)
            } else {
                format!(
                    "displayName `{}`, {} member(s): {}",
                    group.display_name,
                    added.len(),
                    resource::listed(&added, 20)
                )
            };
            event.after = resource::audit_json(&group);
            // The group, its document and its members are one transaction: no decision ever
            // sees the group without its members, and a bad member leaves nothing behind.
            return Ok(Box::new(move |tx| {
                tx.put_group(&group)?;
                tx.put_scim(ScimKind::Group, &group.id, &doc)?;
                tx.add_members(&group.id, &joined)?;
                event.time = clock::now();
                tx.audit(event)?;
                Ok(rendered)
            }));
        };
        let id = before.id.as_str();
        let mut after = mapped.to_group(id, Some(&before), now);
        let same_doc = stored.as_ref() == Some(&doc);
        let same_group = Group {
            updated_at: before.updated_at,
            ..after.clone()
        } == before;
        if same_doc && same_group && added.is_empty() && removed.is_empty() {
            // Nothing to change: nothing committed, nothing audited.
            return Ok(write::nothing(render(
                &before,
                stored.as_ref(),
                &members_before,
                &w.ctx.base,
            )));
        }
        unique(w.view, &mapped, Some(id))?;
        check_users(w.view, &added)?;
        let joined = joined(id);
        let mut event = w.ctx.caller.event(w.action, "group", id);
        event.detail = membership_detail(&after.display_name, &added, &removed);
        event.before = resource::audit_json(&before);
        event.after = resource::audit_json(&after);
        after.updated_at = now;
        let rendered = render(&after, Some(&doc), &members, &w.ctx.base);
        Ok(Box::new(move |tx| {
            let id = after.id.as_str();
            // Any change, memberships included, moves `lastModified`.
            tx.put_group(&after)?;
            if !same_doc {
                tx.put_scim(ScimKind::Group, id, &doc)?;
            }
            if !joined.is_empty() {
                tx.add_members(id, &joined)?;
            }
            if !removed.is_empty() {
                let ids: Vec<&str> = removed.iter().map(String::as_str).collect();
                tx.remove_members(id, &ids)?;
            }
            event.time = clock::now();
            tx.audit(event)?;
            Ok(rendered)
        }))
    }
}

fn membership_detail(name: &str, added: &[String], removed: &[String]) -> String {
    let mut detail = format!("displayName `{name}`");
    if !added.is_empty() {
        detail.push_str(&format!(
            "; added {} member(s): {}",
            added.len(),
            resource::listed(added, 20)
        ));
    }
    if !removed.is_empty() {
        detail.push_str(&format!(
            "; removed {} member(s): {}",
            removed.len(),
            resource::listed(removed, 20)
        ));
    }
    detail
}

/// Deletes a group. One with more members than a request may change loses them first, at most
/// `scim-max-member-changes` per transaction (each audited as `group.remove_member`), so no
/// write holds the store's write lock in proportion to the group's size. Meanwhile each member
/// goes from member to not a member once, as the deletion makes them.
pub async fn delete(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    let chunk = scim.limits.scim_max_member_changes as usize;
    // Checked on the first step only: the group's version moves as its members go.
    let mut if_match = ctx.if_match.clone();
    loop {
        let (ctx, id, expected) = (ctx.clone(), id.clone(), if_match.take());
        let deleted = write(&scim, move |store, view| {
            let expected = expected.as_deref();
            let ((before, _, members), _) =
                current_matching::<Groups>(store, view, &id, &ctx.base, expected)?;
            let ctx = ctx.clone();
            if members.len() > chunk {
                let gone: Vec<String> = members.into_iter().take(chunk).map(|r| r.id).collect();
                let mut event = ctx.caller.event("group.remove_member", "group", &before.id);
                event.detail = format!(
                    "displayName `{}`; removed {} member(s) before deleting the group: {}",
                    before.display_name,
                    gone.len(),
                    resource::listed(&gone, 20)
                );
                return Ok(Box::new(move |tx: &mut store::Tx<'_, '_>| {
                    let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
                    tx.remove_members(&before.id, &ids)?;
                    tx.audit(event)?;
                    Ok(false)
                }) as Commit<bool>);
            }
            Ok(Box::new(move |tx: &mut store::Tx<'_, '_>| {
                let what = format!("displayName `{}`", before.display_name);
                resource::delete(tx, &ctx.caller, Resource::Group, &before.id, &before, what)?;
                Ok(true)
            }) as Commit<bool>)
        })
        .await?;
        if deleted {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
}

pub async fn list(State(scim): State<Scim>, ctx: Ctx) -> Result<Response> {
    list::groups(scim, ctx).await
}
