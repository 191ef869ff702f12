//! An optional shared secret for DecisionService, for when it is reachable beyond loopback.

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Requires `authorization: Bearer <secret>` on every call, compared in constant time.
#[derive(Clone)]
pub struct RequireToken {
    expected: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for RequireToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str("RequireToken")
    }
}

impl RequireToken {
    pub fn new(secret: &str) -> RequireToken {
        RequireToken {
            expected: secret.as_bytes().into(),
        }
    }
}

impl RequireToken {
    /// Whether `presented` is the secret (compared in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(presented.trim().as_bytes().ct_eq(&self.expected))
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim().as_bytes());
        match presented {
            Some(secret) if bool::from(secret.ct_eq(&self.expected)) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid token")),
            None => Err(Status::unauthenticated(
                "missing credentials: send `authorization: Bearer <token>`",
            )),
        }
    }
}
