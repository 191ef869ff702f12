//! Why a submitted policy form was not saved: problems shown next to the fields they name, or
//! a refusal shown as an error page.

use crate::call::Failure;
use crate::fields::Problems;
use tonic::Code;

/// Why a submitted form was not saved: problems shown on the form, or a refusal shown as an
/// error page (no permission, the service unavailable).
#[derive(Debug)]
pub(super) enum Refusal {
    Problems(Problems),
    Failure(Failure),
}

impl Refusal {
    pub(super) fn field(field: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::Problems(Problems::field(field, message))
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
        let field: Option<&'static str> = match message.strip_prefix("policy.") {
            Some(rest) => {
                let path = rest.split(['.', '[', ':']).next().unwrap_or_default();
                match path {
                    "name" => Some("name"),
                    "description" => Some("description"),
                    "connector" => Some("connector"),
                    "tools" | "all_tools" => Some("tools"),
                    "scope" => Some("scope"),
                    "action" => Some("action"),
                    "approval_flow_id" => Some("approval_flow"),
                    "conditions" => Some("conditions"),
                    "agents" => Some("agents"),
                    "step_up" => Some("step_up"),
                    "expression" => Some("expression"),
                    _ => None,
                }
            }
            // `agent `x` not found`, `user …`, `group …`: records the policy names.
            None if message.starts_with("agent ") => Some("agents"),
            None if message.starts_with("user ") || message.starts_with("group ") => Some("scope"),
            None => None,
        };
        match field {
            Some(field) => Refusal::field(field, message),
            None => Refusal::Problems(Problems::whole(message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_refusals_go_next_to_their_field() {
        let problems =
            |message: &str| match Refusal::of_write(tonic::Status::invalid_argument(message)) {
                Refusal::Problems(p) => p,
                Refusal::Failure(f) => panic!("{message}: a failure, {f:?}"),
            };
        for (message, field) in [
            ("policy.expression: Syntax error", "expression"),
            ("policy.tools[0]: must not be empty", "tools"),
            ("policy.approval_flow_id: only", "approval_flow"),
            ("agent `x` not found", "agents"),
        ] {
            assert_eq!(problems(message).of(field), Some(message), "{message}");
        }
        // Naming no field of the form: at its top.
        let whole = problems("something else");
        assert!(!whole.is_empty());
        assert!(
            whole.above().into_string().contains("something else"),
            "{whole:?}"
        );
        assert!(matches!(
            Refusal::of_write(tonic::Status::permission_denied("no")),
            Refusal::Failure(_)
        ));
    }
}
