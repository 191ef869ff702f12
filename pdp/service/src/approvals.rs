//! What a Check needs of approval requests: the request its `approval_id` names, using a
//! `once` grant, and the pending request and flow a Require approval answer points to.
//!
//! The control plane answers from its approvals service (the `approvals` crate); a sidecar from
//! what its control plane streams, asking the control plane to use a `once` grant.

use std::sync::Arc;

/// One call, as an approval request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call<'a> {
    pub user_id: &'a str,
    /// A registered agent's id, or the name an unregistered agent arrived under.
    pub agent: &'a str,
    pub connector: &'a str,
    pub tool: &'a str,
    pub arguments_digest: &'a str,
}

/// Approval requests, as the decision service sees them.
#[tonic::async_trait]
pub trait Approvals: Send + Sync + std::fmt::Debug + 'static {
    /// The approval request with this id, in whatever state, if it is known.
    fn request(&self, id: &str) -> Option<Arc<pdp::ApprovalRequest>>;

    /// Uses the `once` grant of request `id` for decision `decision_id`: `Ok(true)` for
    /// exactly one caller, once that is durable; `Ok(false)` when it is used already or no
    /// longer approved. An error (the control plane out of reach) means not used: the Check
    /// answers Require approval (it fails closed).
    async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool, tonic::Status>;

    /// A pending request for exactly this call, if there is one.
    fn pending(&self, call: &Call<'_>) -> Option<String>;

    /// The flow that handles Require approval answers whose policy names none.
    fn default_flow(&self) -> String;
}
