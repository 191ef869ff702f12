//! Policies: list and search, get, create, update, delete, enable and disable, validated on
//! write.

use crate::auth::Caller;
use crate::{Error, Result};
use live::Live;
use portcullis_proto::v1 as pb;

fn todo<T>(method: &str) -> Result<T> {
    Err(Error::Unavailable(format!("{method} is not built yet")))
}

pub(crate) async fn list(
    _live: &Live,
    _request: pb::ListPoliciesRequest,
) -> Result<pb::ListPoliciesResponse> {
    todo("ListPolicies")
}
pub(crate) async fn get(
    _live: &Live,
    _request: pb::GetPolicyRequest,
) -> Result<pb::GetPolicyResponse> {
    todo("GetPolicy")
}
pub(crate) async fn create(
    _live: &Live,
    _caller: Caller,
    _request: pb::CreatePolicyRequest,
) -> Result<pb::CreatePolicyResponse> {
    todo("CreatePolicy")
}
pub(crate) async fn update(
    _live: &Live,
    _caller: Caller,
    _request: pb::UpdatePolicyRequest,
) -> Result<pb::UpdatePolicyResponse> {
    todo("UpdatePolicy")
}
pub(crate) async fn delete(
    _live: &Live,
    _caller: Caller,
    _request: pb::DeletePolicyRequest,
) -> Result<pb::DeletePolicyResponse> {
    todo("DeletePolicy")
}
pub(crate) async fn set_enabled(
    _live: &Live,
    _caller: Caller,
    _request: pb::SetPolicyEnabledRequest,
) -> Result<pb::SetPolicyEnabledResponse> {
    todo("SetPolicyEnabled")
}
