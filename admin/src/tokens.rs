//! API tokens over the API: create (secret shown once), revoke, list. Admin only.

use crate::auth::Caller;
use crate::{Error, Result};
use live::Live;
use portcullis_proto::v1 as pb;

fn todo<T>(method: &str) -> Result<T> {
    Err(Error::Unavailable(format!("{method} is not built yet")))
}

pub(crate) async fn create(
    _live: &Live,
    _caller: Caller,
    _request: pb::CreateApiTokenRequest,
) -> Result<pb::CreateApiTokenResponse> {
    todo("CreateApiToken")
}
pub(crate) async fn revoke(
    _live: &Live,
    _caller: Caller,
    _request: pb::RevokeApiTokenRequest,
) -> Result<pb::RevokeApiTokenResponse> {
    todo("RevokeApiToken")
}
pub(crate) async fn list(
    _live: &Live,
    _request: pb::ListApiTokensRequest,
) -> Result<pb::ListApiTokensResponse> {
    todo("ListApiTokens")
}
