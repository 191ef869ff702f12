//! Approval flows and approval requests: what a Require approval answer turns into.
//!
//! - [`flows`]: the `ApprovalFlowService` (flows and the default flow) and the checks a flow
//!   must pass.
//! - [`events`]: the events every transition of a request produces, for webhooks.

mod eligible;
pub mod events;
pub mod flows;
mod requests;
mod service;
pub mod stats;

pub use flows::flow as flow_to_wire;
pub use requests::{Approvals, Filter, NewRequest, Verdict};
pub use service::{ApprovalService, MAX_WAIT};
