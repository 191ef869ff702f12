//! Groups: list and search, details, create (Local), update, delete (cleaning policies),
//! members, assign and remove.
//!
//! Group names are unique ignoring case among the groups created or renamed here. A
//! transaction cannot scan groups by name, so those writes check the name against the view and,
//! inside the transaction, that no write landed since that view (its revision is the one just
//! before the transaction's); if one did, they check again on a fresh view.

use crate::auth::Caller;
use crate::convert::{self, timestamp};
use crate::{Error, Result, audit, clock, page, text, users};
use live::Live;
use pdp::{Group, ManagedBy, Membership, MembershipSource, Policy};
use portcullis_proto::v1 as pb;
use std::collections::BTreeSet;
use store::View;
use store::view::{GroupEntry, GroupKey, GroupOrder};

/// Longest group name, in characters.
const MAX_NAME: usize = 256;

/// Most users one AssignUsers call may name.
const MAX_ASSIGN: usize = 1000;

/// How many times a write that checks a name against the view tries again after another write
/// landed between reading the view and taking the write lock.
const ATTEMPTS: usize = 16;

/// The update mask paths UpdateGroup accepts.
const PATHS: [&str; 3] = ["name", "description", "roles"];

fn key(entry: &GroupEntry) -> GroupKey {
    GroupKey {
        name: entry.group.display_name.to_lowercase(),
        size: entry.members,
        id: entry.group.id.clone(),
    }
}

/// The warning a change to a group the identity provider manages comes with (empty otherwise).
fn warning(group: &Group) -> String {
    match group.managed_by {
        ManagedBy::External => format!(
            "group `{}` is managed by the identity provider: the next sync may overwrite this change",
            group.id
        ),
        ManagedBy::Local => String::new(),
    }
}

/// A group name from the request: trimmed, not empty, not too long.
fn name(field: &str, value: &str) -> Result<String> {
    text::required(field, value)?;
    let value = value.trim();
    let chars = value.chars().count();
    if chars > MAX_NAME {
        return Err(Error::invalid(
            field,
            format!("{chars} characters, the limit is {MAX_NAME}"),
        ));
    }
    Ok(value.to_owned())
}

/// The groups named `name`, ignoring case, read from the view's name order.
fn with_name<'v>(view: &'v View, name: &str) -> impl Iterator<Item = &'v GroupEntry> {
    let lower = name.to_lowercase();
    // Ids are never empty, so every group with this name sorts strictly after `(name, "")`.
    let start = GroupKey {
        name: lower.clone(),
        size: 0,
        id: String::new(),
    };
    view.groups_from(GroupOrder::Name, false, Some(&start))
        .take_while(move |e| e.group.display_name.to_lowercase() == lower)
}

/// Another group than `except` already named `name`, ignoring case.
fn named<'v>(view: &'v View, name: &str, except: Option<&str>) -> Option<&'v Group> {
    with_name(view, name)
        .map(|e| &*e.group)
        .find(|g| except != Some(g.id.as_str()))
}

/// Most ids an ambiguous name's refusal lists.
const MAX_LISTED: usize = 10;

/// The one group named `name`, ignoring case (GetGroup's `or_by_name`): groups the identity
/// provider syncs may share a name, and then the caller is asked for an id.
fn by_name<'v>(view: &'v View, name: &str) -> Result<&'v GroupEntry> {
    let mut named = with_name(view, name);
    let Some(first) = named.next() else {
        return Err(Error::NoneNamed {
            kind: "group",
            reference: name.to_owned(),
        });
    };
    let others: Vec<&GroupEntry> = named.collect();
    if others.is_empty() {
        return Ok(first);
    }
    let ids: Vec<String> = std::iter::once(first)
        .chain(others.iter().copied())
        .take(MAX_LISTED)
        .map(|e| e.group.id.clone())
        .collect();
    let more = if others.len() + 1 > MAX_LISTED {
        ", …"
    } else {
        ""
    };
    Err(Error::FailedPrecondition(format!(
        "{} groups are named `{name}`: give one of their ids ({}{more})",
        others.len() + 1,
        listed(&ids)
    )))
}

fn taken(other: &Group, name: &str) -> Error {
    Error::FailedPrecondition(format!(
        "group `{}` is already named `{}`: group names are unique, ignoring case (asked for `{name}`)",
        other.id, other.display_name
    ))
}

fn busy(name: &str) -> Error {
    Error::Unavailable(format!(
        "groups kept changing while checking that the name `{name}` is free; try again"
    ))
}

/// Whether `view` is exactly the state `tx` reads (no write landed since it).
fn current(tx: &store::Tx<'_, '_>, view: &View) -> bool {
    view.revision().checked_add(1) == Some(tx.revision())
}

/// A new group id: `grp_` and 16 lower-case hex digits from the OS.
fn new_id() -> Result<String> {
    Ok(format!("grp_{}", pdp_service::secret::new_id()?))
}

fn listed(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn list(
    live: &Live,
    request: pb::ListGroupsRequest,
) -> Result<pb::ListGroupsResponse> {
    let pb::ListGroupsRequest {
        search,
        sort,
        descending,
        page_size,
        page_token,
    } = request;
    text::bounded("search", &search)?;
    let size = page::size("page_size", page_size)?;
    let order = match pb::GroupSort::try_from(sort) {
        Ok(pb::GroupSort::Unspecified | pb::GroupSort::Name) => GroupOrder::Name,
        Ok(pb::GroupSort::UserCount) => GroupOrder::Size,
        Err(_) => return Err(Error::invalid("sort", format!("unknown sort {sort}"))),
    };
    let needle = search.to_lowercase();
    let query = format!("groups\0{needle}\0{order:?}\0{descending}");
    let after: Option<GroupKey> = page::decode("page_token", &page_token, &query)?;
    let view = live.view()?;
    let mut rows: Vec<&GroupEntry> = view
        .groups_from(order, descending, after.as_ref())
        .filter(|e| text::contains_folded(&e.group.display_name, &needle))
        .take(size + 1)
        .collect();
    let next_page_token = page::next(&mut rows, size, &query, |e| key(e));
    Ok(pb::ListGroupsResponse {
        groups: rows
            .iter()
            .map(|e| convert::group(&e.group, e.members))
            .collect(),
        next_page_token,
        revision: view.revision(),
    })
}

pub(crate) async fn get(live: &Live, request: pb::GetGroupRequest) -> Result<pb::GetGroupResponse> {
    let pb::GetGroupRequest { id, or_by_name } = request;
    text::required("id", &id)?;
    let view = live.view()?;
    let entry = match view.group(&id) {
        Some(entry) => entry,
        None if or_by_name => by_name(&view, &id)?,
        None => return Err(Error::not_found("group", &id)),
    };
    let id = &entry.group.id;
    let policy_ids = view
        .policies()
        .filter(|p| p.scope.groups.contains(id))
        .map(|p| p.id.clone())
        .collect();
    Ok(pb::GetGroupResponse {
        group: Some(convert::group(&entry.group, entry.members)),
        policy_ids,
        revision: view.revision(),
    })
}

pub(crate) async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateGroupRequest,
) -> Result<pb::CreateGroupResponse> {
    let pb::CreateGroupRequest {
        name: asked,
        description,
        roles,
    } = request;
    let name = name("name", &asked)?;
    text::bounded("description", &description)?;
    let roles = convert::roles_from("roles", &roles)?;
    for _ in 0..ATTEMPTS {
        let view = live.view()?;
        let (name, description, roles, caller) = (
            name.clone(),
            description.clone(),
            roles.clone(),
            caller.clone(),
        );
        let (revision, created) = live
            .write(move |tx| {
                if !current(tx, &view) {
                    return Ok(None);
                }
                if let Some(other) = named(&view, &name, None) {
                    return Err(taken(other, &name));
                }
                let mut id = new_id()?;
                // 64 random bits: a collision is all but impossible, but never overwrite.
                while tx.group(&id)?.is_some() {
                    id = new_id()?;
                }
                let now = clock::now();
                let group = Group {
                    id,
                    external_id: None,
                    display_name: name,
                    description,
                    roles,
                    managed_by: ManagedBy::Local,
                    created_at: now,
                    updated_at: now,
                };
                tx.put_group(&group)?;
                let mut event = caller.event("group.create", "group", &group.id);
                event.after = audit::json(&group);
                tx.audit(event)?;
                Ok::<_, Error>(Some(group))
            })
            .await?;
        if let Some(group) = created {
            return Ok(pb::CreateGroupResponse {
                group: Some(convert::group(&group, 0)),
                revision,
            });
        }
    }
    Err(busy(&name))
}

/// What an UpdateGroup changes: the masked fields, validated.
#[derive(Clone)]
struct Changes {
    name: Option<String>,
    description: Option<String>,
    roles: Option<Vec<pdp::Role>>,
    paths: Vec<&'static str>,
}

fn changes(request: pb::UpdateGroupRequest) -> Result<(String, Changes)> {
    let pb::UpdateGroupRequest {
        id,
        name: new_name,
        description,
        roles,
        update_mask,
    } = request;
    text::required("id", &id)?;
    let mask = update_mask.unwrap_or_default();
    if mask.paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            "required: list the fields to change (`name`, `description`, `roles`)",
        ));
    }
    let mut paths = BTreeSet::new();
    for path in &mask.paths {
        let Some(&known) = PATHS.iter().find(|p| **p == path.as_str()) else {
            text::bounded("update_mask", path)?;
            return Err(Error::invalid(
                "update_mask",
                format!(
                    "unknown field `{path}`: a group's `name`, `description` and `roles` can change"
                ),
            ));
        };
        paths.insert(known);
    }
    let mut changes = Changes {
        name: None,
        description: None,
        roles: None,
        paths: paths.into_iter().collect(),
    };
    for path in &changes.paths {
        match *path {
            "name" => changes.name = Some(name("name", &new_name)?),
            "description" => {
                text::bounded("description", &description)?;
                changes.description = Some(description.clone());
            }
            _ => changes.roles = Some(convert::roles_from("roles", &roles)?),
        }
    }
    Ok((id, changes))
}

pub(crate) async fn update(
    live: &Live,
    caller: Caller,
    request: pb::UpdateGroupRequest,
) -> Result<pb::UpdateGroupResponse> {
    let (id, changes) = changes(request)?;
    for _ in 0..ATTEMPTS {
        let view = live.view()?;
        let (id, changes, caller) = (id.clone(), changes.clone(), caller.clone());
        // Read, change and write under the write lock, so concurrent updates of other fields
        // are never lost.
        let (revision, updated) = live
            .write(move |tx| {
                let before = tx
                    .group(&id)?
                    .ok_or_else(|| Error::not_found("group", &id))?;
                let mut after = before.clone();
                if let Some(name) = changes.name {
                    if name.to_lowercase() != before.display_name.to_lowercase() {
                        if !current(tx, &view) {
                            return Ok(None);
                        }
                        if let Some(other) = named(&view, &name, Some(&id)) {
                            return Err(taken(other, &name));
                        }
                    }
                    after.display_name = name;
                }
                if let Some(description) = changes.description {
                    after.description = description;
                }
                if let Some(roles) = changes.roles {
                    after.roles = roles;
                }
                if after == before {
                    // Nothing to change: nothing committed, nothing audited.
                    return Ok(Some((after, false)));
                }
                after.updated_at = clock::now();
                tx.put_group(&after)?;
                let mut event = caller.event("group.update", "group", &id);
                event.detail = format!("changed {}", changes.paths.join(", "));
                event.before = audit::json(&before);
                event.after = audit::json(&after);
                tx.audit(event)?;
                Ok::<_, Error>(Some((after, true)))
            })
            .await?;
        if let Some((group, changed)) = updated {
            // The count as of the view at (or after) the write.
            let members = live
                .view()?
                .group(&group.id)
                .map_or(0, |entry| entry.members);
            return Ok(pb::UpdateGroupResponse {
                warning: if changed {
                    warning(&group)
                } else {
                    String::new()
                },
                group: Some(convert::group(&group, members)),
                revision,
            });
        }
    }
    Err(busy(changes.name.as_deref().unwrap_or_default()))
}

pub(crate) async fn delete(
    live: &Live,
    caller: Caller,
    request: pb::DeleteGroupRequest,
) -> Result<pb::DeleteGroupResponse> {
    let pb::DeleteGroupRequest { id } = request;
    text::required("id", &id)?;
    // One transaction: the group, its memberships and its place in every policy go together,
    // so no revision has a policy naming a group that does not exist.
    let (revision, cleaned) = live
        .write(move |tx| {
            let before = tx
                .group(&id)?
                .ok_or_else(|| Error::not_found("group", &id))?;
            tx.delete_group(&id)?;
            let now = clock::now();
            let mut cleaned: Vec<Policy> = Vec::new();
            for (policy, after) in tx.remove_from_scopes(true, &id, now)? {
                let mut event = caller.event("policy.update", "policy", &after.id);
                event.detail = format!("group `{id}` deleted");
                event.before = audit::json(&policy);
                event.after = audit::json(&after);
                tx.audit(event)?;
                cleaned.push(after);
            }
            let ids: Vec<String> = cleaned.iter().map(|p| p.id.clone()).collect();
            let mut event = caller.event("group.delete", "group", &id);
            event.detail = if ids.is_empty() {
                "named by no policy".into()
            } else {
                format!("removed from policies {}", listed(&ids))
            };
            event.before = audit::json(&before);
            tx.audit(event)?;
            Ok::<_, Error>(cleaned)
        })
        .await?;
    Ok(pb::DeleteGroupResponse {
        updated_policies: cleaned.iter().map(convert::policy).collect(),
        revision,
    })
}

pub(crate) async fn members(
    live: &Live,
    request: pb::ListGroupMembersRequest,
) -> Result<pb::ListGroupMembersResponse> {
    let pb::ListGroupMembersRequest {
        group_id,
        search,
        page_size,
        page_token,
    } = request;
    text::required("group_id", &group_id)?;
    text::bounded("search", &search)?;
    let size = page::size("page_size", page_size)?;
    let needle = search.to_lowercase();
    let query = format!("members\0{group_id}\0{needle}");
    let after: Option<String> = page::decode("page_token", &page_token, &query)?;
    let view = live.view()?;
    if view.group(&group_id).is_none() {
        return Err(Error::not_found("group", &group_id));
    }
    let mut rows: Vec<pb::GroupMember> = view
        .members_after(&group_id, after.as_deref())
        .filter_map(|(user_id, joined)| Some((view.user(user_id)?, joined)))
        .filter(|(user, _)| {
            text::contains_folded(user.email(), &needle)
                || text::contains_folded(&user.display_name, &needle)
        })
        .take(size + 1)
        .map(|(user, joined)| pb::GroupMember {
            user_id: user.id.clone(),
            display_name: user.display_name.clone(),
            email: user.email().to_owned(),
            avatar: Some(convert::avatar(user)),
            status: convert::status(user.status()).into(),
            joined_at: Some(timestamp(joined.at)),
            source: convert::source(joined.source).into(),
        })
        .collect();
    let next_page_token = page::next(&mut rows, size, &query, |m| m.user_id.clone());
    Ok(pb::ListGroupMembersResponse {
        members: rows,
        next_page_token,
        revision: view.revision(),
    })
}

pub(crate) async fn assign(
    live: &Live,
    caller: Caller,
    request: pb::AssignUsersRequest,
) -> Result<pb::AssignUsersResponse> {
    let pb::AssignUsersRequest { group_id, users } = request;
    text::required("group_id", &group_id)?;
    if users.is_empty() {
        return Err(Error::invalid("users", "must name at least one user"));
    }
    if users.len() > MAX_ASSIGN {
        return Err(Error::invalid(
            "users",
            format!("{} users, the limit is {MAX_ASSIGN}", users.len()),
        ));
    }
    let user_ids: BTreeSet<String> = {
        let view = live.view()?;
        if view.group(&group_id).is_none() {
            return Err(Error::not_found("group", &group_id));
        }
        users
            .iter()
            .enumerate()
            .map(|(i, key)| {
                Ok(users::resolve(&view, &format!("users[{i}]"), key)?
                    .id
                    .clone())
            })
            .collect::<Result<_>>()?
    };
    // A user deleted since the view was read fails the whole transaction (the store refuses a
    // membership of a user that does not exist).
    let (revision, (group, added)) = live
        .write(move |tx| {
            let group = tx
                .group(&group_id)?
                .ok_or_else(|| Error::not_found("group", &group_id))?;
            let now = clock::now();
            let mut new = Vec::new();
            for user_id in user_ids {
                if !tx.is_member(&group_id, &user_id)? {
                    new.push(Membership {
                        group_id: group_id.clone(),
                        user_id,
                        joined_at: now,
                        source: MembershipSource::Local,
                    });
                }
            }
            tx.add_members(&group_id, &new)?;
            let added: Vec<String> = new.into_iter().map(|m| m.user_id).collect();
            if !added.is_empty() {
                let mut event = caller.event("group.assign", "group", &group_id);
                event.detail = format!("added {}", listed(&added));
                tx.audit(event)?;
            }
            Ok::<_, Error>((group, added.len()))
        })
        .await?;
    Ok(pb::AssignUsersResponse {
        added: u32::try_from(added).unwrap_or(u32::MAX),
        revision,
        warning: if added > 0 {
            warning(&group)
        } else {
            String::new()
        },
    })
}

pub(crate) async fn remove_member(
    live: &Live,
    caller: Caller,
    request: pb::RemoveGroupMemberRequest,
) -> Result<pb::RemoveGroupMemberResponse> {
    let pb::RemoveGroupMemberRequest { group_id, user } = request;
    text::required("group_id", &group_id)?;
    let user_id = {
        let view = live.view()?;
        if view.group(&group_id).is_none() {
            return Err(Error::not_found("group", &group_id));
        }
        users::resolve(&view, "user", &user)?.id.clone()
    };
    let (revision, (group, removed)) = live
        .write(move |tx| {
            let group = tx
                .group(&group_id)?
                .ok_or_else(|| Error::not_found("group", &group_id))?;
            let removed = tx.remove_members(&group_id, &[user_id.as_str()])? > 0;
            if removed {
                let mut event = caller.event("group.remove_member", "group", &group_id);
                event.detail = format!("removed `{user_id}`");
                tx.audit(event)?;
            }
            Ok::<_, Error>((group, removed))
        })
        .await?;
    Ok(pb::RemoveGroupMemberResponse {
        removed,
        revision,
        warning: if removed {
            warning(&group)
        } else {
            String::new()
        },
    })
}
