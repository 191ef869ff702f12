//! Why a submitted policy form was not saved: problems shown next to the fields they name, or
//! a refusal shown as an error page.

use crate::call::Failure;
use std::collections::BTreeMap;
use tonic::Code;

/// Refusals of a submitted form, by the field they belong to (`""`: the form as a whole).
pub(super) type Problems = BTreeMap<&'static str, String>;

/// Why a submitted form was not saved: problems shown on the form, or a refusal shown as an
/// error page (no permission, the service unavailable).
#[derive(Debug)]
pub(super) enum Refusal {
    Problems(Problems),
    Failure(Failure),
}

impl Refusal {
    pub(super) fn field(field: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Problems(Problems::from([(field, message.into())]))
    }

    /// A refusal by the service: input errors go next to `field`, the rest to an error page.
    pub(super) fn about(field: &'static str, status: tonic::Status) -> Refusal {
        match status.code() {
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => {
                Refusal::field(field, status.message())
            }
            _ => Refusal::Failure(status.into()),
        }
    }

    /// A refusal of the policy write: next to the field the message names
    /// (`policy.expression: …`), else at the top of the form.
    pub(super) fn of_write(status: tonic::Status) -> Refusal {
        if !matches!(
            status.code(),
            Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
        ) {
            return Refusal::Failure(status.into());
        }
        let message = status.message();
        let field = match message.strip_prefix("policy.") {
            Some(rest) => {
                let path = rest.split(['.', '[', ':']).next().unwrap_or_default();
                match path {
                    "name" => "name",
                    "description" => "description",
                    "connector" => "connector",
                    "tools" | "all_tools" => "tools",
                    "scope" => "scope",
                    "action" => "action",
                    "approval_flow_id" => "approval_flow",
                    "conditions" => "conditions",
                    "agents" => "agents",
                    "step_up" => "step_up",
                    "expression" => "expression",
                    _ => "",
                }
            }
            // `agent `x` not found`, `user …`, `group …`: records the policy names.
            None if message.starts_with("agent ") => "agents",
            None if message.starts_with("user ") || message.starts_with("group ") => "scope",
            None => "",
        };
        Refusal::field(field, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_refusals_go_next_to_their_field() {
        let placed =
            |message: &str| match Refusal::of_write(tonic::Status::invalid_argument(message)) {
                Refusal::Problems(p) => p.into_keys().next().unwrap_or("?"),
                Refusal::Failure(_) => "failure",
            };
        assert_eq!(placed("policy.expression: Syntax error"), "expression");
        assert_eq!(placed("policy.tools[0]: must not be empty"), "tools");
        assert_eq!(placed("policy.approval_flow_id: only"), "approval_flow");
        assert_eq!(placed("agent `x` not found"), "agents");
        assert_eq!(placed("something else"), "");
        assert!(matches!(
            Refusal::of_write(tonic::Status::permission_denied("no")),
            Refusal::Failure(_)
        ));
    }
}
