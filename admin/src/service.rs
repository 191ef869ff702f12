//! The gRPC `AdminService`: authenticates every call, then hands it to the module that owns it.

use crate::activity::Activity;
use crate::auth::{self, Caller};
use crate::search::UserSearch;
use crate::{
    Result, agents, audit, convert, groups, import, policies, scim_connections, tokens, users,
};
use live::Live;
use pb::admin_service_server::AdminServiceServer;
use portcullis_proto::v1 as pb;
use tonic::{Request, Response, Status};

const READ: bool = false;
const WRITE: bool = true;

/// Reads the server's token files again: for each, its setting and how many secrets it holds
/// now, or why it was not taken up. The binary owns the files; the admin API only asks.
pub type ReloadTokenFiles =
    std::sync::Arc<dyn Fn() -> Vec<(String, Result<usize, String>)> + Send + Sync>;

/// Serves the admin API over the live store.
#[derive(Clone)]
pub struct AdminService {
    live: Live,
    activity: Activity,
    search: UserSearch,
    reload_token_files: Option<ReloadTokenFiles>,
    /// The one ImportDirectory allowed at a time.
    importing: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService").finish_non_exhaustive()
    }
}

impl AdminService {
    /// `activity` supplies the recent decisions `GetUser` shows.
    /// Starts building the user search index in the background.
    pub fn new(live: Live, activity: Activity) -> AdminService {
        let search = UserSearch::default();
        if let Ok(view) = live.view() {
            search.warm(view);
        }
        AdminService {
            live,
            activity,
            search,
            reload_token_files: None,
            importing: std::sync::Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// What `ReloadTokenFiles` calls; without it the RPC reloads nothing.
    pub fn with_token_files(mut self, reload: ReloadTokenFiles) -> AdminService {
        self.reload_token_files = Some(reload);
        self
    }

    /// Lets a person the console's identity provider signed in have a console session, if
    /// they are one active, unlocked directory user (with or without a role): their user id
    /// ([`auth::sign_in_with_provider`], audited as `console:<handle>`).
    pub fn console_sign_in(
        &self,
        identity: &auth::ProviderIdentity,
        handle: &str,
    ) -> Result<String, Status> {
        Ok(auth::sign_in_with_provider(&self.live, identity, handle)?)
    }

    /// The tonic service, ready to add to a server.
    pub fn into_server(self) -> AdminServiceServer<AdminService> {
        AdminServiceServer::new(self)
    }

    fn authorize<T>(
        &self,
        request: &Request<T>,
        method: &str,
        write: bool,
    ) -> Result<Caller, Status> {
        Ok(auth::authorize(&self.live, request, method, write)?)
    }
}

async fn who_am_i(caller: Caller) -> Result<pb::WhoAmIResponse> {
    Ok(pb::WhoAmIResponse {
        roles: caller
            .roles
            .keys()
            .map(|&r| convert::role(r).into())
            .collect(),
        user_id: caller.user_id,
        email: caller.email,
        display_name: caller.display_name,
        token_id: caller.token_id,
    })
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminService {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        // Any valid caller may ask who they are, holding a role or not (an approver signing in
        // to the console holds none).
        let caller = auth::authenticate(&self.live, &request, "WhoAmI")?;
        Ok(Response::new(who_am_i(caller).await?))
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let _caller = self.authorize(&request, "ListUsers", READ)?;
        let request = request.into_inner();
        Ok(Response::new(
            users::list(&self.live, &self.search, request).await?,
        ))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::GetUserResponse>, Status> {
        let _caller = self.authorize(&request, "GetUser", READ)?;
        let request = request.into_inner();
        Ok(Response::new(
            users::get(&self.live, &self.activity, request).await?,
        ))
    }

    async fn lock_user(
        &self,
        request: Request<pb::LockUserRequest>,
    ) -> Result<Response<pb::LockUserResponse>, Status> {
        let caller = self.authorize(&request, "LockUser", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            users::lock(&self.live, caller, request).await?,
        ))
    }

    async fn unlock_user(
        &self,
        request: Request<pb::UnlockUserRequest>,
    ) -> Result<Response<pb::UnlockUserResponse>, Status> {
        let caller = self.authorize(&request, "UnlockUser", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            users::unlock(&self.live, caller, request).await?,
        ))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let _caller = self.authorize(&request, "ListGroups", READ)?;
        let request = request.into_inner();
        Ok(Response::new(groups::list(&self.live, request).await?))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        let _caller = self.authorize(&request, "GetGroup", READ)?;
        let request = request.into_inner();
        Ok(Response::new(groups::get(&self.live, request).await?))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let caller = self.authorize(&request, "CreateGroup", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            groups::create(&self.live, caller, request).await?,
        ))
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::UpdateGroupResponse>, Status> {
        let caller = self.authorize(&request, "UpdateGroup", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            groups::update(&self.live, caller, request).await?,
        ))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let caller = self.authorize(&request, "DeleteGroup", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            groups::delete(&self.live, caller, request).await?,
        ))
    }

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let _caller = self.authorize(&request, "ListGroupMembers", READ)?;
        let request = request.into_inner();
        Ok(Response::new(groups::members(&self.live, request).await?))
    }

    async fn assign_users(
        &self,
        request: Request<pb::AssignUsersRequest>,
    ) -> Result<Response<pb::AssignUsersResponse>, Status> {
        let caller = self.authorize(&request, "AssignUsers", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            groups::assign(&self.live, caller, request).await?,
        ))
    }

    async fn remove_group_member(
        &self,
        request: Request<pb::RemoveGroupMemberRequest>,
    ) -> Result<Response<pb::RemoveGroupMemberResponse>, Status> {
        let caller = self.authorize(&request, "RemoveGroupMember", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            groups::remove_member(&self.live, caller, request).await?,
        ))
    }

    async fn list_policies(
        &self,
        request: Request<pb::ListPoliciesRequest>,
    ) -> Result<Response<pb::ListPoliciesResponse>, Status> {
        let _caller = self.authorize(&request, "ListPolicies", READ)?;
        let request = request.into_inner();
        Ok(Response::new(policies::list(&self.live, request).await?))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let _caller = self.authorize(&request, "GetPolicy", READ)?;
        let request = request.into_inner();
        Ok(Response::new(policies::get(&self.live, request).await?))
    }

    async fn create_policy(
        &self,
        request: Request<pb::CreatePolicyRequest>,
    ) -> Result<Response<pb::CreatePolicyResponse>, Status> {
        let caller = self.authorize(&request, "CreatePolicy", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            policies::create(&self.live, caller, request).await?,
        ))
    }

    async fn update_policy(
        &self,
        request: Request<pb::UpdatePolicyRequest>,
    ) -> Result<Response<pb::UpdatePolicyResponse>, Status> {
        let caller = self.authorize(&request, "UpdatePolicy", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            policies::update(&self.live, caller, request).await?,
        ))
    }

    async fn delete_policy(
        &self,
        request: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        let caller = self.authorize(&request, "DeletePolicy", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            policies::delete(&self.live, caller, request).await?,
        ))
    }

    async fn set_policy_enabled(
        &self,
        request: Request<pb::SetPolicyEnabledRequest>,
    ) -> Result<Response<pb::SetPolicyEnabledResponse>, Status> {
        let caller = self.authorize(&request, "SetPolicyEnabled", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            policies::set_enabled(&self.live, caller, request).await?,
        ))
    }

    async fn apply_policies(
        &self,
        request: Request<pb::ApplyPoliciesRequest>,
    ) -> Result<Response<pb::ApplyPoliciesResponse>, Status> {
        let caller = self.authorize(&request, "ApplyPolicies", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            policies::apply(&self.live, caller, request).await?,
        ))
    }

    async fn import_directory(
        &self,
        request: Request<tonic::Streaming<pb::ImportDirectoryChunk>>,
    ) -> Result<Response<pb::ImportDirectoryResponse>, Status> {
        let caller = self.authorize(&request, "ImportDirectory", WRITE)?;
        // One at a time: each holds a whole directory in memory.
        let Ok(_importing) = self.importing.clone().try_acquire_owned() else {
            return Err(crate::Error::Unavailable(
                "another import is running; try again once it is done".to_owned(),
            )
            .into());
        };
        Ok(Response::new(
            import::import(&self.live, caller, request.into_inner()).await?,
        ))
    }

    async fn export_policies(
        &self,
        request: Request<pb::ExportPoliciesRequest>,
    ) -> Result<Response<pb::ExportPoliciesResponse>, Status> {
        self.authorize(&request, "ExportPolicies", READ)?;
        let pb::ExportPoliciesRequest {} = request.into_inner();
        Ok(Response::new(policies::export(&self.live).await?))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let _caller = self.authorize(&request, "ListAgents", READ)?;
        let request = request.into_inner();
        Ok(Response::new(agents::list(&self.live, request).await?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let _caller = self.authorize(&request, "GetAgent", READ)?;
        let request = request.into_inner();
        Ok(Response::new(agents::get(&self.live, request).await?))
    }

    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let caller = self.authorize(&request, "CreateAgent", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::create(&self.live, caller, request).await?,
        ))
    }

    async fn update_agent(
        &self,
        request: Request<pb::UpdateAgentRequest>,
    ) -> Result<Response<pb::UpdateAgentResponse>, Status> {
        let caller = self.authorize(&request, "UpdateAgent", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::update(&self.live, caller, request).await?,
        ))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let caller = self.authorize(&request, "DeleteAgent", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::delete(&self.live, caller, request).await?,
        ))
    }

    async fn set_agent_enabled(
        &self,
        request: Request<pb::SetAgentEnabledRequest>,
    ) -> Result<Response<pb::SetAgentEnabledResponse>, Status> {
        let caller = self.authorize(&request, "SetAgentEnabled", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::set_enabled(&self.live, caller, request).await?,
        ))
    }

    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        let _caller = self.authorize(&request, "GetSettings", READ)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::get_settings(&self.live, request).await?,
        ))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        let caller = self.authorize(&request, "UpdateSettings", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            agents::update_settings(&self.live, caller, request).await?,
        ))
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let _caller = self.authorize(&request, "ListAuditEvents", READ)?;
        let request = request.into_inner();
        Ok(Response::new(audit::list(&self.live, request).await?))
    }

    async fn get_activity(
        &self,
        request: Request<pb::GetActivityRequest>,
    ) -> Result<Response<pb::GetActivityResponse>, Status> {
        let _caller = self.authorize(&request, "GetActivity", READ)?;
        let minutes = match request.into_inner().minutes {
            0 => 60,
            m => m,
        };
        Ok(Response::new(
            self.activity
                .summary(&self.live, crate::clock::now(), minutes)
                .await?,
        ))
    }

    async fn create_api_token(
        &self,
        request: Request<pb::CreateApiTokenRequest>,
    ) -> Result<Response<pb::CreateApiTokenResponse>, Status> {
        let caller = self.authorize(&request, "CreateApiToken", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            tokens::create(&self.live, caller, request).await?,
        ))
    }

    async fn revoke_api_token(
        &self,
        request: Request<pb::RevokeApiTokenRequest>,
    ) -> Result<Response<pb::RevokeApiTokenResponse>, Status> {
        let caller = self.authorize(&request, "RevokeApiToken", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            tokens::revoke(&self.live, caller, request).await?,
        ))
    }

    async fn list_api_tokens(
        &self,
        request: Request<pb::ListApiTokensRequest>,
    ) -> Result<Response<pb::ListApiTokensResponse>, Status> {
        let _caller = self.authorize(&request, "ListApiTokens", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(tokens::list(&self.live, request).await?))
    }

    async fn reload_token_files(
        &self,
        request: Request<pb::ReloadTokenFilesRequest>,
    ) -> Result<Response<pb::ReloadTokenFilesResponse>, Status> {
        let caller = self.authorize(&request, "ReloadTokenFiles", WRITE)?;
        let pb::ReloadTokenFilesRequest {} = request.into_inner();
        let reloaded = match &self.reload_token_files {
            Some(reload) => {
                let reload = reload.clone();
                tokio::task::spawn_blocking(move || reload())
                    .await
                    .map_err(|e| Status::internal(format!("the reload task failed: {e}")))?
            }
            None => Vec::new(),
        };
        let files: Vec<pb::ReloadedTokenFile> = reloaded
            .into_iter()
            .map(|(setting, outcome)| match outcome {
                Ok(secrets) => pb::ReloadedTokenFile {
                    setting,
                    secrets: u32::try_from(secrets).unwrap_or(u32::MAX),
                    error: String::new(),
                },
                Err(error) => pb::ReloadedTokenFile {
                    setting,
                    secrets: 0,
                    error,
                },
            })
            .collect();
        // Which files were read and how many secrets each holds: never a secret.
        let detail = files
            .iter()
            .map(|f| match f.error.is_empty() {
                true => format!("{}: {} secrets", f.setting, f.secrets),
                false => format!("{}: unchanged ({})", f.setting, f.error),
            })
            .collect::<Vec<_>>()
            .join("; ");
        // No store change goes with it, so the event is appended alone (as refusals are).
        let mut event = caller.event("credentials.reload", "token_files", "");
        event.detail = detail;
        self.live
            .blocking(move |store| store.append_audit(event))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .map_err(|e| Status::from(crate::Error::from(e)))?;
        Ok(Response::new(pb::ReloadTokenFilesResponse { files }))
    }

    async fn list_scim_connections(
        &self,
        request: Request<pb::ListScimConnectionsRequest>,
    ) -> Result<Response<pb::ListScimConnectionsResponse>, Status> {
        let _caller = self.authorize(&request, "ListScimConnections", READ)?;
        let pb::ListScimConnectionsRequest {} = request.into_inner();
        Ok(Response::new(scim_connections::list(&self.live).await?))
    }

    async fn create_scim_connection(
        &self,
        request: Request<pb::CreateScimConnectionRequest>,
    ) -> Result<Response<pb::CreateScimConnectionResponse>, Status> {
        let caller = self.authorize(&request, "CreateScimConnection", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            scim_connections::create(&self.live, caller, request).await?,
        ))
    }

    async fn rotate_scim_connection(
        &self,
        request: Request<pb::RotateScimConnectionRequest>,
    ) -> Result<Response<pb::RotateScimConnectionResponse>, Status> {
        let caller = self.authorize(&request, "RotateScimConnection", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            scim_connections::rotate(&self.live, caller, request).await?,
        ))
    }

    async fn revoke_scim_connection(
        &self,
        request: Request<pb::RevokeScimConnectionRequest>,
    ) -> Result<Response<pb::RevokeScimConnectionResponse>, Status> {
        let caller = self.authorize(&request, "RevokeScimConnection", WRITE)?;
        let request = request.into_inner();
        Ok(Response::new(
            scim_connections::revoke(&self.live, caller, request).await?,
        ))
    }
}
