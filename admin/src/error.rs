//! The admin API's errors and their one mapping onto gRPC status codes.

/// What can go wrong serving an admin call. Messages name the field or id at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed; `field` is its path in the request.
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    /// A record a request field names does not exist; `field` is its path in the request.
    #[error("{field}: {kind} `{id}` not found")]
    NotFoundAt {
        field: String,
        kind: &'static str,
        id: String,
    },
    /// Nothing has the id or the name a request gave (a reference that may be either).
    #[error("no {kind} has the id or the name `{reference}`")]
    NoneNamed {
        kind: &'static str,
        reference: String,
    },
    /// The request is valid but the state does not allow it.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The change committed but could not be confirmed live, or the store failed.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub(crate) fn not_found(kind: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            kind,
            id: id.into(),
        }
    }
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Error {
        use store::Error as S;
        match error {
            S::NotFound { kind, id } => Error::NotFound { kind, id },
            S::InvalidId { field, .. } => Error::invalid(field, error.to_string()),
            S::Duplicate { .. }
            | S::Dangling { .. }
            | S::WrongGroup { .. }
            | S::AgentNameTaken { .. }
            | S::UnknownAgent { .. } => Error::FailedPrecondition(error.to_string()),
            S::Locked { .. } | S::Sync { .. } | S::Storage(_) | S::Failed => {
                Error::Unavailable(error.to_string())
            }
            _ => Error::Internal(error.to_string()),
        }
    }
}

impl From<pdp_service::Error> for Error {
    fn from(error: pdp_service::Error) -> Error {
        match error {
            pdp_service::Error::InvalidArgument { field, problem } => {
                Error::InvalidArgument { field, problem }
            }
            e @ pdp_service::Error::RevisionNotReached { .. } => {
                Error::FailedPrecondition(e.to_string())
            }
        }
    }
}

impl From<live::Error> for Error {
    fn from(error: live::Error) -> Error {
        match error {
            live::Error::Store(e) => e.into(),
            e @ live::Error::NotLive { .. } => Error::Unavailable(e.to_string()),
            live::Error::Task(e) => Error::Internal(e),
        }
    }
}

impl From<pdp_service::secret::RandomFailed> for Error {
    fn from(error: pdp_service::secret::RandomFailed) -> Error {
        Error::Unavailable(error.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let message = error.to_string();
        match error {
            Error::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            Error::NotFound { .. } | Error::NotFoundAt { .. } | Error::NoneNamed { .. } => {
                tonic::Status::not_found(message)
            }
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(message),
            Error::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            Error::PermissionDenied(_) => tonic::Status::permission_denied(message),
            Error::Unavailable(_) => tonic::Status::unavailable(message),
            Error::Internal(_) => {
                tracing::error!(error = %message, "admin call failed");
                tonic::Status::internal(message)
            }
        }
    }
}
