//! Conditions written in CEL (the Common Expression Language) over a request: compiled when a
//! policy is written, evaluated at decision time for the policies that have one.
//!
//! What an expression sees:
//! - `request.attributes` (map of strings), `request.arguments` (the tool call's arguments,
//!   JSON), `request.agent`, `request.connector`, `request.tool`;
//! - `user.id`, `user.email`, `user.groups` (group ids), `user.mfa` (bool, false when unknown);
//! - `now` (a timestamp).

use crate::decide::Request;
use crate::model::Mfa;

/// The longest expression accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;

/// A compiled condition.
#[derive(Debug)]
pub struct Expression {
    source: Box<str>,
}

/// Why an expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    pub message: String,
}

/// What an expression is evaluated over.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub request: &'a Request<'a>,
    pub user: UserFacts<'a>,
}

/// The user a request resolved to, as conditions see them.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub groups: &'a [&'a str],
    pub mfa: Mfa,
}

impl Expression {
    /// Compiles `source`, or says why (with the position) it cannot be.
    pub fn compile(source: &str) -> Result<Expression, CompileError> {
        Err(CompileError {
            message: format!("CEL conditions are not available yet: `{source}`"),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition: `Ok(true)` when it holds; an error (or a non-boolean result)
    /// says why it could not be decided, and the policy then does not apply.
    pub fn evaluate(&self, _input: &Input<'_>) -> Result<bool, String> {
        Err("CEL conditions are not available yet".into())
    }

    /// Whether the expression reads `request.arguments`: a listing of allowed tools, which
    /// knows no arguments, shows such a policy's tools as conditional.
    pub fn reads_arguments(&self) -> bool {
        self.source.contains("arguments")
    }
}
