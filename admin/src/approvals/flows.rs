//! Approval flows over the admin API: the `ApprovalFlowService`.
