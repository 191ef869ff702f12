//! Users: list and search, details, lock and unlock.

use crate::activity::Activity;
use crate::auth::{self, Caller};
use crate::convert::{self, timestamp};
use crate::search::{Query, UserSearch};
use crate::{Error, Result, audit, clock, page, text};
use live::Live;
use pdp::identity::Resolved;
use pdp::{Lock, User, UserStatus};
use portcullis_proto::v1 as pb;
use std::sync::Arc;
use store::View;
use store::view::{UserKey, UserOrder};

/// Longest lock reason kept.
const MAX_REASON: usize = 1024;

/// How many of the users sharing an ambiguous reference its error lists.
const AMBIGUOUS_LISTED: usize = 10;

/// The user `key` names by the rule decisions use ([`pdp::identity`]: an id, else the one user
/// with that external id, email or user name): NOT_FOUND naming it if none, FAILED_PRECONDITION
/// listing the users' ids if several share it.
pub(crate) fn resolve(view: &View, field: &str, key: &str) -> Result<Arc<User>> {
    text::required(field, key)?;
    match view.resolve_user(key) {
        Resolved::User(user) => Ok(Arc::clone(user)),
        Resolved::Unknown => Err(Error::not_found("user", key)),
        Resolved::Ambiguous => {
            let ids = view.users_sharing(key, AMBIGUOUS_LISTED);
            let ids: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
            Err(Error::FailedPrecondition(format!(
                "{field}: `{key}` names several users ({}): name one by its id",
                ids.join(", ")
            )))
        }
    }
}

pub(crate) async fn list(
    live: &Live,
    index: &UserSearch,
    request: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse> {
    let pb::ListUsersRequest {
        search,
        status,
        sort,
        descending,
        page_size,
        page_token,
    } = request;
    text::bounded("search", &search)?;
    let size = page::size("page_size", page_size)?;
    let status = match pb::UserStatus::try_from(status) {
        Ok(pb::UserStatus::Unspecified) => None,
        Ok(pb::UserStatus::Active) => Some(UserStatus::Active),
        Ok(pb::UserStatus::Inactive) => Some(UserStatus::Inactive),
        Ok(pb::UserStatus::Locked) => Some(UserStatus::Locked),
        Err(_) => return Err(Error::invalid("status", format!("unknown status {status}"))),
    };
    let order = match pb::UserSort::try_from(sort) {
        Ok(pb::UserSort::Unspecified | pb::UserSort::Email) => UserOrder::Email,
        Ok(pb::UserSort::Mfa) => UserOrder::Mfa,
        Ok(pb::UserSort::Created) => UserOrder::Created,
        Err(_) => return Err(Error::invalid("sort", format!("unknown sort {sort}"))),
    };
    let needle = search.to_lowercase();
    let query = format!("users\0{needle}\0{status:?}\0{order:?}\0{descending}");
    let after: Option<UserKey> = page::decode("page_token", &page_token, &query)?;
    let view = live.view()?;
    let mut rows: Vec<Arc<User>> = if needle.is_empty() && status.is_none() {
        // A plain page: a walk of the view's order from the cursor.
        view.users_from(order, descending, after.as_ref())
            .take(size + 1)
            .cloned()
            .collect()
    } else {
        index.find(
            &view,
            &Query {
                needle: &needle,
                status,
                order,
                descending,
                after: after.as_ref(),
                limit: size + 1,
            },
        )
    };
    let next_page_token = page::next(&mut rows, size, &query, |u| UserKey::of(u));
    Ok(pb::ListUsersResponse {
        users: rows.iter().map(|u| convert::user_row(u)).collect(),
        next_page_token,
        revision: view.revision(),
    })
}

pub(crate) async fn get(
    live: &Live,
    activity: &Activity,
    request: pb::GetUserRequest,
) -> Result<pb::GetUserResponse> {
    let pb::GetUserRequest {
        user,
        activity_limit,
    } = request;
    let limit = match activity_limit {
        0 => 20,
        n if n > 200 => {
            return Err(Error::invalid(
                "activity_limit",
                format!("{n} is more than the maximum of 200"),
            ));
        }
        n => n as usize,
    };
    let view = live.view()?;
    let user = resolve(&view, "user", &user)?;
    let groups = view
        .groups_of(&user.id)
        .filter_map(|(group_id, joined)| {
            let entry = view.group(group_id)?;
            Some(pb::UserGroup {
                group_id: group_id.to_string(),
                name: entry.group.display_name.clone(),
                managed_by: convert::managed_by(entry.group.managed_by).into(),
                roles: convert::roles(&entry.group.roles),
                joined_at: Some(timestamp(joined.at)),
                source: convert::source(joined.source).into(),
            })
        })
        .collect();
    let roles = auth::roles_of(&view, &user.id)
        .into_iter()
        .map(|(role, group_ids)| pb::EffectiveRole {
            role: convert::role(role).into(),
            group_ids,
        })
        .collect();
    let decisions = activity
        .of(live, &user, limit)
        .await?
        .into_iter()
        .map(|r| pb::DecisionActivity {
            time: Some(timestamp(pdp::Timestamp(r.time_ms))),
            agent: r.agent,
            connector: r.connector,
            tool: r.tool,
            decision: decision(r.action).into(),
            reason: reason(r.reason).into(),
            policy_id: r.policy_id.unwrap_or_default(),
            revision: r.revision,
        })
        .collect();
    let changes = audit::about(live, "user", user.id.clone(), limit).await?;
    Ok(pb::GetUserResponse {
        user: Some(convert::user(&user)),
        groups,
        roles,
        decisions,
        changes,
        revision: view.revision(),
    })
}

pub(crate) fn decision(action: pdp::Action) -> pb::Decision {
    match action {
        pdp::Action::Allow => pb::Decision::Allow,
        pdp::Action::StepUp => pb::Decision::StepUp,
        pdp::Action::RequireApproval => pb::Decision::RequireApproval,
        pdp::Action::Deny => pb::Decision::Deny,
    }
}

pub(crate) fn reason(reason: pdp::Reason) -> pb::Reason {
    match reason {
        pdp::Reason::Policy => pb::Reason::Policy,
        pdp::Reason::NoMatchingPolicy => pb::Reason::NoMatchingPolicy,
        pdp::Reason::UserLocked => pb::Reason::UserLocked,
        pdp::Reason::UserInactive => pb::Reason::UserInactive,
        pdp::Reason::UnknownUser => pb::Reason::UnknownUser,
        pdp::Reason::AmbiguousUser => pb::Reason::AmbiguousUser,
        pdp::Reason::UnknownAgent => pb::Reason::UnknownAgent,
        pdp::Reason::AgentDisabled => pb::Reason::AgentDisabled,
        pdp::Reason::AgentNotAllowed => pb::Reason::AgentNotAllowed,
        pdp::Reason::StepUpMet => pb::Reason::StepUpMet,
        pdp::Reason::Approved => pb::Reason::Approved,
    }
}

/// Locks (`Some(reason)`) or unlocks (`None`) a user; a no-op if already so.
async fn set_lock(
    live: &Live,
    caller: Caller,
    key: &str,
    reason: Option<String>,
) -> Result<(u64, User)> {
    let id = resolve(live.view()?.as_ref(), "user", key)?.id.clone();
    if reason.is_some() && id == caller.user_id {
        return Err(Error::FailedPrecondition(
            "you cannot lock yourself: another admin must".into(),
        ));
    }
    live.write(move |tx| {
        let before = tx.user(&id)?.ok_or_else(|| Error::not_found("user", &id))?;
        if before.lock.is_some() == reason.is_some() {
            return Ok(before);
        }
        let now = clock::now();
        let mut after = before.clone();
        after.lock = reason.clone().map(|reason| Lock {
            at: now,
            by: caller.user_id.clone(),
            reason,
        });
        after.updated_at = now;
        tx.put_user(&after)?;
        let action = if reason.is_some() {
            "user.lock"
        } else {
            "user.unlock"
        };
        let mut event = caller.event(action, "user", &id);
        event.detail = reason.unwrap_or_default();
        event.before = audit::json(&before);
        event.after = audit::json(&after);
        tx.audit(event)?;
        Ok(after)
    })
    .await
}

pub(crate) async fn lock(
    live: &Live,
    caller: Caller,
    request: pb::LockUserRequest,
) -> Result<pb::LockUserResponse> {
    let pb::LockUserRequest { user, reason } = request;
    text::required("reason", &reason)?;
    if reason.len() > MAX_REASON {
        return Err(Error::invalid(
            "reason",
            format!("longer than {MAX_REASON} bytes"),
        ));
    }
    let (revision, user) = set_lock(live, caller, &user, Some(reason)).await?;
    Ok(pb::LockUserResponse {
        user: Some(convert::user(&user)),
        revision,
    })
}

pub(crate) async fn unlock(
    live: &Live,
    caller: Caller,
    request: pb::UnlockUserRequest,
) -> Result<pb::UnlockUserResponse> {
    let pb::UnlockUserRequest { user } = request;
    let (revision, user) = set_lock(live, caller, &user, None).await?;
    Ok(pb::UnlockUserResponse {
        user: Some(convert::user(&user)),
        revision,
    })
}
