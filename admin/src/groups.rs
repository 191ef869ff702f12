//! Groups: list and search, details, create (Local), update, delete (cleaning policies),
//! members, assign and remove.

use crate::auth::Caller;
use crate::{Error, Result};
use live::Live;
use portcullis_proto::v1 as pb;

fn todo<T>(method: &str) -> Result<T> {
    Err(Error::Unavailable(format!("{method} is not built yet")))
}

pub(crate) async fn list(
    _live: &Live,
    _request: pb::ListGroupsRequest,
) -> Result<pb::ListGroupsResponse> {
    todo("ListGroups")
}
pub(crate) async fn get(
    _live: &Live,
    _request: pb::GetGroupRequest,
) -> Result<pb::GetGroupResponse> {
    todo("GetGroup")
}
pub(crate) async fn create(
    _live: &Live,
    _caller: Caller,
    _request: pb::CreateGroupRequest,
) -> Result<pb::CreateGroupResponse> {
    todo("CreateGroup")
}
pub(crate) async fn update(
    _live: &Live,
    _caller: Caller,
    _request: pb::UpdateGroupRequest,
) -> Result<pb::UpdateGroupResponse> {
    todo("UpdateGroup")
}
pub(crate) async fn delete(
    _live: &Live,
    _caller: Caller,
    _request: pb::DeleteGroupRequest,
) -> Result<pb::DeleteGroupResponse> {
    todo("DeleteGroup")
}
pub(crate) async fn members(
    _live: &Live,
    _request: pb::ListGroupMembersRequest,
) -> Result<pb::ListGroupMembersResponse> {
    todo("ListGroupMembers")
}
pub(crate) async fn assign(
    _live: &Live,
    _caller: Caller,
    _request: pb::AssignUsersRequest,
) -> Result<pb::AssignUsersResponse> {
    todo("AssignUsers")
}
pub(crate) async fn remove_member(
    _live: &Live,
    _caller: Caller,
    _request: pb::RemoveGroupMemberRequest,
) -> Result<pb::RemoveGroupMemberResponse> {
    todo("RemoveGroupMember")
}
