//! The admin API: `AdminService` over gRPC, for admin consoles and the `portcullis admin` CLI.
//!
//! It owns users (listing, details, locks), groups (local groups, roles, members), policies,
//! API tokens and the audit log as the API shows them, and who may call it: every call is
//! authenticated by an API token ([`token`]) and authorized by role ([`auth`]). Every write goes
//! through [`live::Live::write`]: one store transaction with its audit event, acknowledged only
//! once decisions answer from its revision.
//!
//! It must not decide (that is `pdp`) or touch sled (that is `store`), and never calls sync.

pub mod activity;
mod agents;
pub mod approvals;
mod audit;
pub mod auth;
mod clock;
mod convert;
mod error;
mod groups;
pub mod import;
mod mask;
pub mod outbound;
mod page;
mod policies;
mod scim_connections;
mod search;
mod service;
mod switch;
mod text;
pub mod token;
mod tokens;
mod users;
pub mod webhooks;

pub use activity::Activity;
pub use approvals::flows::ApprovalFlowService;
pub use audit::{ABOUT_SCAN, LIST_SCAN};
pub use error::{Error, Result};
pub use page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use service::{AdminService, ReloadTokenFiles};
