//! The pure decision core of Portcullis: the directory and policy [`model`], the indexed
//! [`Snapshot`] built from it, and the decision rule ([`Snapshot::decide`]).
//!
//! This crate must stay embeddable in a gateway process and cheap to fuzz and benchmark: no
//! async runtime, no RPC, no storage, no logging. The rule lives in [`decide`] alone;
//! [`decide_reference`] restates it by brute force so the two can be tested against each other.

mod agents;
pub mod approval;
pub mod decide;
mod delta;
pub mod expression;
pub mod identity;
pub mod model;
mod reference;
mod snapshot;

pub use approval::{
    Approval, ApprovalFlow, ApprovalRequest, ApprovalStep, Approver, Grant, GrantMode,
    RequestState, arguments_digest,
};
pub use decide::{
    AllowedTool, Arguments, Context, Decision, Outcome, PolicyMatch, Reason, Request,
};
pub use delta::{Changes, Directory, UserDelta};
pub use model::{
    Action, Agent, Agents, Attributes, Authentication, Condition, Group, Lock, ManagedBy,
    Membership, MembershipSource, Mfa, Model, NoAttributes, Operator, Policy, Role, Scope,
    Settings, StepUp, Timestamp, Tools, Unregistered, User, UserStatus,
};
pub use reference::decide_reference;
pub use snapshot::{Parts, Snapshot};

#[cfg(test)]
mod tests;
