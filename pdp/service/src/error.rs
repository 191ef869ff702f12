//! The service's errors and their one mapping onto gRPC status codes.

/// What can go wrong answering a decision request. Denies are answers, not errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or malformed; `field` is its path in the request.
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    /// The caller asked for a revision this server has not reached in time.
    #[error(
        "min_revision: revision {min_revision} not reached within the wait limit (serving {current})"
    )]
    RevisionNotReached { min_revision: u64, current: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> tonic::Status {
        let message = error.to_string();
        match error {
            Error::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            Error::RevisionNotReached { .. } => tonic::Status::failed_precondition(message),
        }
    }
}
