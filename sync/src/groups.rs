//! `/Groups`: groups the identity provider manages (`ManagedBy::External`) and their members.
//!
//! The group's document is kept like a user's (minus `id`, `meta` and `members`: members are
//! the store's memberships, source `Idp`). Groups an administrator made here
//! (`ManagedBy::Local`) do not exist for SCIM: 404 by id, absent from lists. What SCIM has no
//! word for (a group's description and admin roles) is kept across SCIM writes.

use crate::attrs::Projection;
use crate::connection::random_hex;
use crate::http::{self, Ctx};
use crate::patch;
use crate::resource::{self, Ref};
use crate::schema::{self, Resource};
use crate::write::{Turn, write};
use crate::{Result, Scim, ScimError, clock, json, list};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use pdp::{Group, ManagedBy, Membership, MembershipSource};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use store::{ScimKind, Tx, View};

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
    fn to_group(&self, id: &str, existing: Option<&Group>, now: pdp::Timestamp) -> Group {
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
fn normalize(body: Value) -> Result<(Map<String, Value>, Vec<String>)> {
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

/// The group `id` as it is now, rendered, inside a transaction.
fn current(
    tx: &Tx<'_, '_>,
    view: &View,
    id: &str,
    base: &str,
) -> Result<(Group, Option<Value>, Vec<Ref>, Value)> {
    let group = external(tx.group(id)?, id)?;
    let stored = tx.scim(ScimKind::Group, id)?;
    let members = resource::group_members(view, id);
    let rendered = render(&group, stored.as_ref(), &members, base);
    Ok((group, stored, members, rendered))
}

/// What a replace or patch asks for.
struct Change<'a> {
    action: &'a str,
    before: &'a Group,
    stored: Option<&'a Value>,
    members_before: &'a [Ref],
    doc: &'a Map<String, Value>,
    mapped: &'a Mapped,
    members_after: &'a [String],
}

/// Writes a replaced or patched group: the group and its document if they changed, and only
/// the memberships added and removed. Returns it rendered.
fn commit(tx: &mut Tx<'_, '_>, view: &View, ctx: &Ctx, change: Change<'_>) -> Result<Value> {
    let Change {
        action,
        before,
        stored,
        members_before,
        doc,
        mapped,
        members_after,
    } = change;
    let id = before.id.as_str();
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
    let now = clock::now();
    let mut after = mapped.to_group(id, Some(before), now);
    let same_doc = stored.and_then(Value::as_object) == Some(doc);
    let same_group = Group {
        updated_at: before.updated_at,
        ..after.clone()
    } == *before;
    // The members as they will be: those kept, in id order, then those added.
    let mut members: Vec<Ref> = members_before
        .iter()
        .filter(|r| now_set.contains(r.id.as_str()))
        .cloned()
        .collect();
    members.extend(resource::users_by_id(view, &added));
    members.sort_by(|a, b| a.id.cmp(&b.id));
    if same_doc && same_group && added.is_empty() && removed.is_empty() {
        // Nothing to change: nothing committed, nothing audited.
        return Ok(render(before, stored, members_before, &ctx.base));
    }
    unique(view, mapped, Some(id))?;
    check_users(view, &added)?;
    // Any change, memberships included, moves `lastModified`.
    tx.put_group(&after)?;
    let doc = Value::Object(doc.clone());
    if !same_doc {
        tx.put_scim(ScimKind::Group, id, &doc)?;
    }
    let joined: Vec<Membership> = added
        .iter()
        .map(|user_id| Membership {
            group_id: id.to_owned(),
            user_id: user_id.clone(),
            joined_at: now,
            source: MembershipSource::Idp,
        })
        .collect();
    if !joined.is_empty() {
        tx.add_members(id, &joined)?;
    }
    if !removed.is_empty() {
        let ids: Vec<&str> = removed.iter().map(String::as_str).collect();
        tx.remove_members(id, &ids)?;
    }
    let mut event = ctx.caller.event(action, "group", id);
    event.detail = membership_detail(&after.display_name, &added, &removed);
    event.before = resource::audit_json(before);
    event.after = resource::audit_json(&after);
    tx.audit(event)?;
    after.updated_at = now;
    Ok(render(&after, Some(&doc), &members, &ctx.base))
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

pub async fn create(State(scim): State<Scim>, ctx: Ctx, body: Body) -> Result<Response> {
    let body = http::read_json(&ctx, body).await?;
    http::require_schema(&body, schema::GROUP)?;
    let (doc, member_ids) = normalize(body)?;
    let mapped = Mapped::from_doc(&Value::Object(doc.clone()))?;
    let projection = Projection::from_ctx(&ctx, Resource::Group);
    let doc = Value::Object(doc);
    let mut turn = Turn::take(&scim).await;
    // The group, its document and its members are one transaction: no decision ever sees
    // the group without its members, and a bad member leaves nothing behind.
    let group = {
        let (ctx, doc, member_ids) = (ctx.clone(), doc.clone(), member_ids.clone());
        turn.commit(move |tx, view| {
            unique(view, &mapped, None)?;
            check_users(view, &member_ids)?;
            let mut id = random_hex(16)?;
            // 128 random bits: a collision is all but impossible, but never overwrite.
            while tx.group(&id)?.is_some() {
                id = random_hex(16)?;
            }
            let group = mapped.to_group(&id, None, clock::now());
            tx.put_group(&group)?;
            tx.put_scim(ScimKind::Group, &id, &doc)?;
            let joined: Vec<Membership> = member_ids
                .iter()
                .map(|user_id| Membership {
                    group_id: id.clone(),
                    user_id: user_id.clone(),
                    joined_at: group.created_at,
                    source: MembershipSource::Idp,
                })
                .collect();
            tx.add_members(&id, &joined)?;
            let mut event = ctx.caller.event("group.create", "group", &id);
            event.detail = if member_ids.is_empty() {
                format!("displayName `{}`", group.display_name)
            } else {
                format!(
                    "displayName `{}`, {} member(s): {}",
                    group.display_name,
                    member_ids.len(),
                    resource::listed(&member_ids, 20)
                )
            };
            event.after = resource::audit_json(&group);
            tx.audit(event)?;
            Ok(group)
        })
        .await?
    };
    turn.publish().await?;
    let view = scim.live.view()?;
    let mut members = resource::users_by_id(&view, &member_ids);
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let rendered = render(&group, Some(&doc), &members, &ctx.base);
    Ok(http::resource(
        StatusCode::CREATED,
        &rendered,
        &projection.apply(&rendered),
    ))
}

pub async fn get(State(scim): State<Scim>, ctx: Ctx, Path(id): Path<String>) -> Result<Response> {
    let view = scim.live.view()?;
    let group = external(view.group(&id).map(|e| Group::clone(&e.group)), &id)?;
    let stored = {
        let id = id.clone();
        scim.live
            .blocking(move |store| store.get_scim(ScimKind::Group, &id))
            .await??
    };
    let members = resource::group_members(&view, &id);
    let rendered = render(&group, stored.as_ref(), &members, &ctx.base);
    let projection = Projection::from_ctx(&ctx, Resource::Group);
    Ok(http::resource(
        StatusCode::OK,
        &rendered,
        &projection.apply(&rendered),
    ))
}

pub async fn replace(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response> {
    let body = http::read_json(&ctx, body).await?;
    http::require_schema(&body, schema::GROUP)?;
    let (doc, member_ids) = normalize(body)?;
    let mapped = Mapped::from_doc(&Value::Object(doc.clone()))?;
    let projection = Projection::from_ctx(&ctx, Resource::Group);
    let rendered = write(&scim, move |tx, view| {
        let (before, stored, members_before, current) = current(tx, view, &id, &ctx.base)?;
        http::check_if_match(ctx.if_match.as_deref(), resource::version_of(&current))?;
        let change = Change {
            action: "group.replace",
            before: &before,
            stored: stored.as_ref(),
            members_before: &members_before,
            doc: &doc,
            mapped: &mapped,
            members_after: &member_ids,
        };
        commit(tx, view, &ctx, change)
    })
    .await?;
    Ok(http::resource(
        StatusCode::OK,
        &rendered,
        &projection.apply(&rendered),
    ))
}

pub async fn patch(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response> {
    let body = http::read_json(&ctx, body).await?;
    http::require_schema(&body, schema::PATCH_OP)?;
    let operations = patch::parse(&body)?;
    let projection = Projection::from_ctx(&ctx, Resource::Group);
    let rendered = write(&scim, move |tx, view| {
        let (before, stored, members_before, current) = current(tx, view, &id, &ctx.base)?;
        http::check_if_match(ctx.if_match.as_deref(), resource::version_of(&current))?;
        let mut patched = current;
        patch::apply(&mut patched, &operations)?;
        let (doc, member_ids) = normalize(patched)?;
        let mapped = Mapped::from_doc(&Value::Object(doc.clone()))?;
        let change = Change {
            action: "group.patch",
            before: &before,
            stored: stored.as_ref(),
            members_before: &members_before,
            doc: &doc,
            mapped: &mapped,
            members_after: &member_ids,
        };
        commit(tx, view, &ctx, change)
    })
    .await?;
    Ok(http::resource(
        StatusCode::OK,
        &rendered,
        &projection.apply(&rendered),
    ))
}

pub async fn delete(
    State(scim): State<Scim>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Response> {
    write(&scim, move |tx, view| {
        let (before, _, _, current) = current(tx, view, &id, &ctx.base)?;
        http::check_if_match(ctx.if_match.as_deref(), resource::version_of(&current))?;
        tx.delete_group(&id)?;
        let what = format!("displayName `{}`", before.display_name);
        let detail = resource::forget_in_policies(tx, &ctx.caller, true, &id, what)?;
        let mut event = ctx.caller.event("group.delete", "group", &id);
        event.detail = detail;
        event.before = resource::audit_json(&before);
        tx.audit(event)?;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list(State(scim): State<Scim>, ctx: Ctx) -> Result<Response> {
    list::groups(scim, ctx).await
}
