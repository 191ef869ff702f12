//! IdP sync: a SCIM 2.0 service provider (RFC 7643 schema, RFC 7644 protocol) that Okta and
//! Microsoft Entra ID provision in real time, served over HTTP (axum) by `portcullis serve`.
//!
//! It owns the SCIM view of users and groups: filters ([`filter`]), PATCH ([`patch`]), the
//! mapping between SCIM documents and the model, the IdP dialects it accepts, its bearer tokens
//! (one per IdP connection) and its errors (always the RFC 7644 §3.12 body). Every change goes
//! through [`live::Live::write`]: one store transaction with its audit event, answered only once
//! decisions reflect it.
//!
//! It must not decide (that is `pdp`), touch sled (that is `store`), or call the admin API.

pub mod error;
pub mod filter;
pub mod patch;
pub mod path;

pub use error::{Result, ScimError};
