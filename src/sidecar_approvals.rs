//! The control plane's approval requests as its sidecar feed reads them: the feed streams the
//! usable grants and pending calls, and uses `once` grants for sidecars' Checks.

use admin::approvals::{Approvals, Filter};
use pdp::{ApprovalRequest, RequestState};
use std::sync::Arc;

/// [`fleet::ApprovalSource`] over this control plane's approval requests.
#[derive(Debug)]
pub struct Source(pub Approvals);

#[tonic::async_trait]
impl fleet::ApprovalSource for Source {
    fn requests(&self) -> Vec<Arc<ApprovalRequest>> {
        let filter = Filter {
            states: vec![RequestState::Approved, RequestState::Pending],
            ..Filter::default()
        };
        // Every one: pending requests are bounded (100,000) and so are kept ones (200,000).
        self.0.list(&filter, None, None, usize::MAX).0
    }

    fn default_flow(&self) -> String {
        self.0.default_flow()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changes()
    }

    fn flows(&self) -> Option<Vec<portcullis_proto::v1::ApprovalFlow>> {
        match self.0.live().store().flows() {
            Ok(flows) => Some(flows.iter().map(admin::approvals::flow_to_wire).collect()),
            // Those held stay as they were rather than emptied by a failed read.
            Err(error) => {
                tracing::warn!(%error, "cannot read the approval flows for sidecars");
                None
            }
        }
    }

    async fn use_once(&self, id: &str, decision_id: &str) -> Result<bool, tonic::Status> {
        self.0
            .use_once(id, decision_id)
            .await
            .map_err(tonic::Status::from)
    }
}
