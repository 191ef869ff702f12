//! End-to-end tests: the real `portcullis` binary, a real store in a temp dir, real gRPC on an
//! ephemeral loopback port. One test binary (modules per area) to keep link time down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin_cli;
mod agents;
mod approval_flows;
mod approvals;
mod audit_log;
mod authzen;
mod backup;
mod cli;
mod cli_day_two;
mod cli_shell;
mod config;
mod console;
mod credentials;
mod decision_log;
mod deploy;
mod docs_match;
mod fleet;
mod hammer;
mod hardening_net;
mod identity;
mod import_online;
mod limit_settings;
mod metrics;
mod policies_as_code;
mod profiles;
mod readme_tour;
mod restart;
mod scim;
mod shutdown;
mod sidecar_approvals;
mod support;
mod tls;
mod tracing;
mod webhooks;
mod workload_replay;
