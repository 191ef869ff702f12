//! The scope picker's lookups: the users and groups a policy's scope names, each found as the
//! API's other callers find them, before the policy is written.

use super::draft::{Draft, lines, words};
use super::refusal::Refusal;
use crate::Console;
use crate::call::Signed;
use pb::admin_service_server::AdminService as _;
use portcullis_proto::v1 as pb;

/// Most users or groups one scope may name in the form (each is looked up before the write).
const MAX_NAMED: usize = 1000;

impl Draft {
    /// The ids of the users and groups the scope names, each looked up as the API's other
    /// callers do (the CLI too): a user by id, email or user name (GetUser), a group by id or
    /// exact name (GetGroup).
    pub(super) async fn scope(
        &self,
        console: &Console,
        signed: &Signed,
    ) -> Result<(Vec<String>, Vec<String>), Refusal> {
        let users = words(&self.users);
        let groups: Vec<String> = lines(&self.groups);
        if users.len() > MAX_NAMED || groups.len() > MAX_NAMED {
            return Err(Refusal::field(
                "scope",
                format!("name at most {MAX_NAMED} users and {MAX_NAMED} groups"),
            ));
        }
        let admin = &console.services().admin;
        let mut user_ids = Vec::with_capacity(users.len());
        for user in users {
            let request = pb::GetUserRequest {
                user: user.clone(),
                activity_limit: 1,
            };
            match admin.get_user(signed.request(request)).await {
                Ok(found) => {
                    let id = found.into_inner().user.map(|u| u.id).unwrap_or(user);
                    if !user_ids.contains(&id) {
                        user_ids.push(id);
                    }
                }
                Err(status) => return Err(Refusal::about("scope", status)),
            }
        }
        let mut group_ids = Vec::with_capacity(groups.len());
        for group in groups {
            let id = group_id(console, signed, &group).await?;
            if !group_ids.contains(&id) {
                group_ids.push(id);
            }
        }
        Ok((user_ids, group_ids))
    }
}

/// The group `reference` names: its id, or the one group with that name, ignoring case
/// (GetGroup's `or_by_name`, which refuses a name several groups share, listing them).
async fn group_id(console: &Console, signed: &Signed, reference: &str) -> Result<String, Refusal> {
    let request = pb::GetGroupRequest {
        id: reference.to_owned(),
        or_by_name: true,
    };
    let found = console
        .services()
        .admin
        .get_group(signed.request(request))
        .await
        .map_err(|status| Refusal::about("scope", status))?;
    Ok(found
        .into_inner()
        .group
        .map_or_else(|| reference.to_owned(), |g| g.id))
}
