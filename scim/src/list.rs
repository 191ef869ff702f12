//! Listing `/Users` and `/Groups` (RFC 7644 §3.4.2): `filter`, `startIndex` (1-based), `count`
//! (default and most [`MAX_RESULTS`]), `attributes` / `excludedAttributes`. Resources come in id
//! order; sorting is not supported.
//!
//! A filter that is one equality on an indexed attribute (what IdPs send: `userName eq`,
//! `externalId eq`, `displayName eq`, `id eq`, `members.value eq`…) reads the view's index,
//! then checks the few candidates with the filter itself. Any other filter renders every
//! resource and evaluates it: a full scan, fine up to a medium directory (tens of thousands of
//! users). Users are rendered from the model alone, without reading their kept document, when
//! the filter reads only attributes the model holds.

use crate::attrs::Projection;
use crate::filter::{self, Filter};
use crate::http::{self, Ctx};
use crate::resource::{self, Ref};
use crate::schema::{self, Resource};
use crate::{Result, Scim, ScimError, groups, users};
use axum::http::StatusCode;
use axum::response::Response;
use pdp::{Group, ManagedBy, User};
use serde_json::{Value, json};
use std::sync::Arc;
use store::{ScimKind, Store, View};

/// The most resources one page holds, and the default page size.
pub const MAX_RESULTS: usize = 200;

/// Which page: `startIndex` (1-based) and `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Paging {
    start: usize,
    count: usize,
}

fn number(ctx: &Ctx, name: &str, shown: &str) -> Result<Option<i64>> {
    match ctx.param(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ScimError::invalid_value(format!("`{shown}` must be an integer, not `{text}`"))
        }),
    }
}

/// `startIndex` below 1 counts as 1; `count` below 0 as 0 and above [`MAX_RESULTS`] as that
/// (RFC 7644 §3.4.2.4).
fn paging(ctx: &Ctx) -> Result<Paging> {
    let start = number(ctx, "startindex", "startIndex")?.unwrap_or(1).max(1);
    let count = number(ctx, "count", "count")?
        .unwrap_or(MAX_RESULTS as i64)
        .clamp(0, MAX_RESULTS as i64);
    Ok(Paging {
        start: usize::try_from(start).unwrap_or(usize::MAX),
        count: usize::try_from(count).unwrap_or(0),
    })
}

impl Paging {
    fn page<T>(self, items: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
        items.skip(self.start - 1).take(self.count)
    }
}

/// The `filter` parameter, refusing attributes the server does not serve.
fn filter(ctx: &Ctx, resource: Resource, bounds: filter::Bounds) -> Result<Option<Filter>> {
    let Some(text) = ctx.param("filter").filter(|f| !f.trim().is_empty()) else {
        return Ok(None);
    };
    let filter = crate::filter::parse_within(text, bounds)?;
    if let Some(unknown) = filter
        .attributes()
        .into_iter()
        .find(|a| !resource.serves(a))
    {
        return Err(ScimError::invalid_filter(format!(
            "`{unknown}` is not an attribute of {} this server serves",
            resource.name()
        )));
    }
    Ok(Some(filter))
}

/// The ListResponse of one page.
fn answer(
    total: usize,
    paging: Paging,
    resources: Vec<Value>,
    projection: &Projection,
) -> Response {
    let resources: Vec<Value> = resources.iter().map(|r| projection.apply(r)).collect();
    let body = json!({
        "schemas": [schema::LIST_RESPONSE],
        "totalResults": total,
        "startIndex": paging.start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    http::scim_json(StatusCode::OK, &body)
}

/// Paths a user filter may read for the user to be rendered from the model alone: what the
/// model keeps, and what rendering writes over the kept document.
fn model_only_user(path: &str) -> bool {
    const SIMPLE: &[&str] = &[
        "id",
        "externalid",
        "username",
        // Not `displayName` or `active`: the kept document shows them only when the client
        // sent them (users::write_mapped), so a filter on them reads that document.
        "emails",
        "emails.value",
        "name.givenname",
        "name.familyname",
        "groups",
        "groups.value",
        "groups.display",
    ];
    let mfa = format!("{}:mfaenabled", schema::PORTCULLIS_USER.to_lowercase());
    SIMPLE.contains(&path) || path == "meta" || path.starts_with("meta.") || path == mfa
}

/// Paths a group filter may read for the group to be rendered without its kept document.
fn model_only_group(path: &str) -> bool {
    ["id", "externalid", "displayname", "meta", "members"].contains(&path)
        || path.starts_with("meta.")
        || path.starts_with("members.")
}

/// The users an equality on an indexed attribute can match (a superset is fine: the filter
/// checks each); `None` if the attribute has no index.
fn user_candidates(view: &View, attribute: &str, value: &str) -> Option<Vec<Arc<User>>> {
    Some(match attribute {
        "id" => view.user(value).cloned().into_iter().collect(),
        "username" => view.users_named(value).cloned().collect(),
        "externalid" => view.users_with_external_id(value).cloned().collect(),
        // No index of every email (only the primary's): a scan of the model, without rendering.
        "emails.value" => {
            let value = value.to_lowercase();
            view.users()
                .filter(|u| u.emails.iter().any(|e| e.to_lowercase() == value))
                .cloned()
                .collect()
        }
        "groups.value" => match view.group(value) {
            Some(entry) if entry.group.managed_by == ManagedBy::External => view
                .members_of(value)
                .filter_map(|(user_id, _)| view.user(user_id).cloned())
                .collect(),
            _ => Vec::new(),
        },
        _ => return None,
    })
}

/// The SCIM groups an equality on an indexed attribute can match; `None` if it has no index.
fn group_candidates(view: &View, attribute: &str, value: &str) -> Option<Vec<Arc<Group>>> {
    let groups: Vec<Arc<Group>> = match attribute {
        "id" => view
            .group(value)
            .map(|e| Arc::clone(&e.group))
            .into_iter()
            .collect(),
        "displayname" => view
            .groups_named(value)
            .map(|e| Arc::clone(&e.group))
            .collect(),
        "externalid" => view
            .groups_with_external_id(value)
            .map(|e| Arc::clone(&e.group))
            .collect(),
        "members.value" => view
            .groups_of(value)
            .filter_map(|(group_id, _)| view.group(group_id))
            .map(|e| Arc::clone(&e.group))
            .collect(),
        _ => return None,
    };
    Some(
        groups
            .into_iter()
            .filter(|g| g.managed_by == ManagedBy::External)
            .collect(),
    )
}

fn render_user(store: &Store, view: &View, user: &User, base: &str) -> Result<Value> {
    let stored = store.get_scim(ScimKind::User, &user.id)?;
    let groups = resource::user_groups(view, &user.id);
    Ok(users::render(user, stored.as_ref(), &groups, base))
}

fn render_group(store: &Store, view: &View, group: &Group, base: &str) -> Result<Value> {
    let stored = store.get_scim(ScimKind::Group, &group.id)?;
    let members = resource::group_members(view, &group.id);
    Ok(groups::render(group, stored.as_ref(), &members, base))
}

pub async fn users(scim: Scim, ctx: Ctx) -> Result<Response> {
    let paging = paging(&ctx)?;
    let filter = filter(&ctx, Resource::User, scim.limits.filter_bounds())?;
    let projection = Projection::from_ctx(&ctx, Resource::User);
    let view = scim.live.view()?;
    let base = ctx.base;
    let (total, page) = scim
        .live
        .blocking(move |store| -> Result<(usize, Vec<Value>)> {
            let full = |user: &User| render_user(store, &view, user, &base);
            let Some(filter) = filter else {
                let page = paging
                    .page(view.users())
                    .map(|u| full(u))
                    .collect::<Result<_>>()?;
                return Ok((view.user_count(), page));
            };
            let indexed = filter
                .as_equality()
                .and_then(|(attribute, value)| user_candidates(&view, &attribute, &value));
            if let Some(candidates) = indexed {
                let mut matched = Vec::new();
                for user in candidates {
                    let rendered = full(&user)?;
                    if filter.matches(&rendered) {
                        matched.push(rendered);
                    }
                }
                let total = matched.len();
                return Ok((total, paging.page(matched.into_iter()).collect()));
            }
            let model_only = filter.attributes().iter().all(|a| model_only_user(a));
            let mut matched: Vec<&Arc<User>> = Vec::new();
            for user in view.users() {
                let rendered = if model_only {
                    users::render(user, None, &resource::user_groups(&view, &user.id), &base)
                } else {
                    full(user)?
                };
                if filter.matches(&rendered) {
                    matched.push(user);
                }
            }
            let total = matched.len();
            let page = paging
                .page(matched.into_iter())
                .map(|u| full(u))
                .collect::<Result<_>>()?;
            Ok((total, page))
        })
        .await??;
    Ok(answer(total, paging, page, &projection))
}

pub async fn groups(scim: Scim, ctx: Ctx) -> Result<Response> {
    let paging = paging(&ctx)?;
    let filter = filter(&ctx, Resource::Group, scim.limits.filter_bounds())?;
    let projection = Projection::from_ctx(&ctx, Resource::Group);
    let view = scim.live.view()?;
    let base = ctx.base;
    let (total, page) = scim
        .live
        .blocking(move |store| -> Result<(usize, Vec<Value>)> {
            let full = |group: &Group| render_group(store, &view, group, &base);
            let external = || {
                view.groups()
                    .map(|e| &e.group)
                    .filter(|g| g.managed_by == ManagedBy::External)
            };
            let Some(filter) = filter else {
                let page = paging
                    .page(external())
                    .map(|g| full(g))
                    .collect::<Result<_>>()?;
                return Ok((external().count(), page));
            };
            let indexed = filter
                .as_equality()
                .and_then(|(attribute, value)| group_candidates(&view, &attribute, &value));
            if let Some(candidates) = indexed {
                let mut matched = Vec::new();
                for group in candidates {
                    let rendered = full(&group)?;
                    if filter.matches(&rendered) {
                        matched.push(rendered);
                    }
                }
                let total = matched.len();
                return Ok((total, paging.page(matched.into_iter()).collect()));
            }
            let attributes = filter.attributes();
            let model_only = attributes.iter().all(|a| model_only_group(a));
            let with_members = attributes
                .iter()
                .any(|a| a == "members" || a.starts_with("members."));
            let mut matched: Vec<&Arc<Group>> = Vec::new();
            for group in external() {
                let rendered = if model_only {
                    let members: Vec<Ref> = if with_members {
                        resource::group_members(&view, &group.id)
                    } else {
                        Vec::new()
                    };
                    groups::render(group, None, &members, &base)
                } else {
                    full(group)?
                };
                if filter.matches(&rendered) {
                    matched.push(group);
                }
            }
            let total = matched.len();
            let page = paging
                .page(matched.into_iter())
                .map(|g| full(g))
                .collect::<Result<_>>()?;
            Ok((total, page))
        })
        .await??;
    Ok(answer(total, paging, page, &projection))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(params: &[(&str, &str)]) -> Ctx {
        Ctx {
            caller: crate::auth::Caller {
                connection_id: "c".into(),
                name: "test".into(),
            },
            base: "http://localhost/scim/v2".into(),
            if_match: None,
            content_type: None,
            content_length: None,
            max_body: 4096,
            max_depth: 64,
            params: params
                .iter()
                .map(|(k, v)| (k.to_lowercase(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn paging_defaults_and_clamps() {
        assert_eq!(
            paging(&ctx(&[])).unwrap(),
            Paging {
                start: 1,
                count: 200
            }
        );
        assert_eq!(
            paging(&ctx(&[("startIndex", "0"), ("count", "1000")])).unwrap(),
            Paging {
                start: 1,
                count: 200
            }
        );
        assert_eq!(
            paging(&ctx(&[("startIndex", "5"), ("count", "-3")])).unwrap(),
            Paging { start: 5, count: 0 }
        );
        assert_eq!(paging(&ctx(&[("count", "ten")])).unwrap_err().status, 400);
    }

    #[test]
    fn filters_on_unserved_attributes_are_refused() {
        let refused = filter(
            &ctx(&[("filter", "shoeSize eq \"9\"")]),
            Resource::User,
            filter::Bounds::default(),
        );
        assert_eq!(refused.unwrap_err().scim_type, Some("invalidFilter"));
        assert!(
            filter(
                &ctx(&[("filter", "userName eq \"a\"")]),
                Resource::User,
                filter::Bounds::default()
            )
            .unwrap()
            .is_some()
        );
        assert!(
            filter(
                &ctx(&[("filter", " ")]),
                Resource::User,
                filter::Bounds::default()
            )
            .unwrap()
            .is_none()
        );
    }
}
