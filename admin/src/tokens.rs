//! API tokens over the API: create (secret shown once), revoke, list. Admin only.
//!
//! Neither a secret nor its hash ever leaves this module: responses carry the token without its
//! hash ([`convert::token`]) and the audit log the token redacted ([`audit::redacted`]).

use crate::auth::Caller;
use crate::{Error, Result, audit, clock, convert, text, token, users};
use live::Live;
use portcullis_proto::v1 as pb;
use store::ApiToken;

/// Longest token name, in characters.
const MAX_NAME: usize = 128;

/// How long a new token lives: positive, at least a millisecond (the store's resolution).
fn lifetime(field: &str, duration: prost_types::Duration) -> Result<std::time::Duration> {
    let positive = || Error::invalid(field, "must be positive (at least 1ms)");
    let duration = std::time::Duration::try_from(duration).map_err(|_| positive())?;
    if duration.as_millis() == 0 {
        return Err(positive());
    }
    Ok(duration)
}

pub(crate) async fn create(
    live: &Live,
    caller: Caller,
    request: pb::CreateApiTokenRequest,
) -> Result<pb::CreateApiTokenResponse> {
    let pb::CreateApiTokenRequest {
        user,
        name,
        expires_in,
        role,
    } = request;
    text::required("name", &name)?;
    if name.chars().count() > MAX_NAME {
        return Err(Error::invalid(
            "name",
            format!("longer than {MAX_NAME} characters"),
        ));
    }
    let expires_in = expires_in.map(|d| lifetime("expires_in", d)).transpose()?;
    let role = match pb::Role::try_from(role) {
        Ok(pb::Role::Unspecified) => None,
        _ => Some(convert::role_from("role", role)?),
    };
    let user_id = users::resolve(live.view()?.as_ref(), "user", &user)?
        .id
        .clone();
    let token::Minted { token, secret } =
        token::mint(&user_id, &name, role, expires_in, &caller.user_id)?;
    let (revision, token) = live
        .write(move |tx| -> Result<ApiToken> {
            if tx.user(&token.user_id)?.is_none() {
                return Err(Error::not_found("user", &token.user_id));
            }
            if tx.token(&token.id)?.is_some() {
                return Err(Error::Unavailable(format!(
                    "the new token id `{}` is taken; try again",
                    token.id
                )));
            }
            tx.put_token(&token)?;
            let mut event = caller.event("token.create", "token", &token.id);
            event.detail = format!("for user `{}`", token.user_id);
            event.after = audit::json(&audit::redacted(&token));
            tx.audit(event)?;
            Ok(token)
        })
        .await?;
    Ok(pb::CreateApiTokenResponse {
        token: Some(convert::token(&token)),
        secret,
        revision,
    })
}

pub(crate) async fn revoke(
    live: &Live,
    caller: Caller,
    request: pb::RevokeApiTokenRequest,
) -> Result<pb::RevokeApiTokenResponse> {
    let pb::RevokeApiTokenRequest { id } = request;
    text::required("id", &id)?;
    let (revision, token) = live
        .write(move |tx| -> Result<ApiToken> {
            let before = tx
                .token(&id)?
                .ok_or_else(|| Error::not_found("token", &id))?;
            if before.revoked_at.is_some() {
                return Ok(before);
            }
            let mut after = before.clone();
            after.revoked_at = Some(clock::now());
            tx.put_token(&after)?;
            let mut event = caller.event("token.revoke", "token", &id);
            event.detail = format!("of user `{}`", after.user_id);
            event.before = audit::json(&audit::redacted(&before));
            event.after = audit::json(&audit::redacted(&after));
            tx.audit(event)?;
            Ok(after)
        })
        .await?;
    Ok(pb::RevokeApiTokenResponse {
        token: Some(convert::token(&token)),
        revision,
    })
}

pub(crate) async fn list(
    live: &Live,
    request: pb::ListApiTokensRequest,
) -> Result<pb::ListApiTokensResponse> {
    let pb::ListApiTokensRequest { user } = request;
    let user_id = if user.is_empty() {
        None
    } else {
        Some(
            users::resolve(live.view()?.as_ref(), "user", &user)?
                .id
                .clone(),
        )
    };
    let mut tokens = live.blocking(|store| store.tokens()).await??;
    tokens.retain(|t| user_id.as_ref().is_none_or(|u| t.user_id == *u));
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(pb::ListApiTokensResponse {
        tokens: tokens.iter().map(convert::token).collect(),
    })
}
