//! The bounds of what one decision request may carry, on `serve` and `sidecar`: the largest
//! request message the gRPC servers decode, the largest AuthZEN body (the same request over
//! HTTP), and the most checks one `BatchCheck` (or AuthZEN batch) holds.
//!
//! tonic refuses a message over its limit with `OUT_OF_RANGE` and its own wording; gRPC says a
//! server refuses one with `RESOURCE_EXHAUSTED`, so [`refusing_large_messages`] turns tonic's
//! answer into that, naming the setting to raise.

use tonic::service::Routes;
use tonic::{Code, Status};

/// The gRPC bounds, flattened into `serve`'s and `sidecar`'s settings.
#[derive(Debug, Clone, Copy, clap::Args)]
#[group(id = "grpc_limits")]
pub struct Args {
    /// The largest request message the gRPC services decode, in bytes; a bigger one is refused
    /// with RESOURCE_EXHAUSTED naming this setting. Answers are not bounded by it.
    #[arg(
        long,
        env = "PORTCULLIS_GRPC_MAX_MESSAGE_BYTES",
        default_value_t = 4 * 1024 * 1024,
        value_parser = clap::value_parser!(u32).range(1024..)
    )]
    pub grpc_max_message_bytes: u32,
    /// The most checks one BatchCheck (or one AuthZEN `evaluations` request) may carry;
    /// more are refused with INVALID_ARGUMENT (AuthZEN: 400) naming this setting.
    #[arg(
        long,
        env = "PORTCULLIS_BATCH_MAX_CHECKS",
        default_value_t = pdp_service::DEFAULT_MAX_BATCH as u32,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub batch_max_checks: u32,
    /// The largest AuthZEN request body read, in bytes; a bigger one is refused with 413 naming
    /// this setting.
    #[arg(
        long,
        env = "PORTCULLIS_AUTHZEN_MAX_BODY_BYTES",
        default_value_t = pdp_service::authzen::DEFAULT_MAX_BODY as u32,
        value_parser = clap::value_parser!(u32).range(1024..)
    )]
    pub authzen_max_body_bytes: u32,
}

impl Args {
    /// The message bound, as tonic's servers take it.
    pub fn message_bytes(&self) -> usize {
        self.grpc_max_message_bytes as usize
    }

    /// The batch bound, as `DecisionService` takes it.
    pub fn batch_checks(&self) -> usize {
        self.batch_max_checks as usize
    }

    /// The AuthZEN body bound, as its router takes it.
    pub fn authzen_body_bytes(&self) -> usize {
        self.authzen_max_body_bytes as usize
    }
}

/// tonic's message when a request message is over the decoding limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";

/// `routes`, answering a request message over `limit` bytes with RESOURCE_EXHAUSTED naming
/// `grpc-max-message-bytes` (each service must also be given the limit: tonic has no server-wide
/// one).
pub fn refusing_large_messages(routes: Routes, limit: usize) -> Routes {
    let rewrite = move |response: axum::response::Response| async move { rewrite(response, limit) };
    Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::map_response(rewrite)),
    )
}

/// A unary call's refusal arrives "trailers-only": the status is among the headers.
fn rewrite(response: axum::response::Response, limit: usize) -> axum::response::Response {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let found = status
        .message()
        .strip_prefix(TONIC_TOO_LARGE)
        .and_then(|rest| rest.split(' ').next());
    match (status.code(), found) {
        (Code::OutOfRange, Some(found)) => Status::resource_exhausted(format!(
            "the request message is {found} bytes, the limit is {limit} (`grpc-max-message-bytes`)"
        ))
        .into_http(),
        _ => response,
    }
}
