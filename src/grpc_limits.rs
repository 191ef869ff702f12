//! The bounds of what one decision request may carry, on `serve` and `sidecar`: the largest
//! request message the gRPC servers decode, the largest AuthZEN body (the same request over
//! HTTP), the most checks one `BatchCheck` (or AuthZEN batch) holds, the bounds of one check's
//! `attributes` and `arguments`, and the deepest nesting of a JSON body (AuthZEN's, and on
//! `serve` SCIM's).
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
    /// The most `attributes` entries one check (Check, each of a BatchCheck, an AuthZEN
    /// evaluation) may carry; more are refused with INVALID_ARGUMENT (AuthZEN: 400) naming this
    /// setting.
    #[arg(
        long,
        env = "PORTCULLIS_CHECK_MAX_ATTRIBUTES",
        default_value_t = pdp_service::MAX_ATTRIBUTES as u32,
        value_parser = clap::value_parser!(u32).range(0..=4096)
    )]
    pub check_max_attributes: u32,
    /// The longest key or value of a check's `attributes`, in bytes; a longer one is refused
    /// with INVALID_ARGUMENT (AuthZEN: 400) naming this setting.
    #[arg(
        long,
        env = "PORTCULLIS_CHECK_MAX_ATTRIBUTE_BYTES",
        default_value_t = pdp_service::CheckBounds::default().max_attribute_bytes as u32,
        value_parser = clap::value_parser!(u32).range(1..=1024 * 1024)
    )]
    pub check_max_attribute_bytes: u32,
    /// The largest `arguments` of a check, in bytes encoded (conditions read them and approvals
    /// digest them on every check); larger are refused with INVALID_ARGUMENT (AuthZEN: 400)
    /// naming this setting.
    #[arg(
        long,
        env = "PORTCULLIS_CHECK_MAX_ARGUMENTS_BYTES",
        default_value_t = pdp_service::MAX_ARGUMENTS_BYTES as u32,
        value_parser = clap::value_parser!(u32).range(0..=16 * 1024 * 1024)
    )]
    pub check_max_arguments_bytes: u32,
    /// The deepest nesting of an AuthZEN (and on `serve` a SCIM) request body, checked before
    /// it is parsed; deeper is refused with 400 (SCIM `invalidSyntax`) naming this setting. At
    /// most 127: the JSON parser stops at 128.
    #[arg(
        long,
        env = "PORTCULLIS_JSON_MAX_DEPTH",
        default_value_t = pdp_service::json_depth::DEFAULT_JSON_DEPTH as u32,
        value_parser = clap::value_parser!(u32)
            .range(1..=pdp_service::json_depth::MAX_JSON_DEPTH as i64)
    )]
    pub json_max_depth: u32,
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

    /// The deepest nesting of a JSON body.
    pub fn json_depth(&self) -> usize {
        self.json_max_depth as usize
    }

    /// The bounds of one check's `attributes` and `arguments`, as `DecisionService` takes them.
    pub fn check_bounds(&self) -> pdp_service::CheckBounds {
        pdp_service::CheckBounds {
            max_attributes: self.check_max_attributes as usize,
            max_attribute_bytes: self.check_max_attribute_bytes as usize,
            max_arguments_bytes: self.check_max_arguments_bytes as usize,
        }
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
