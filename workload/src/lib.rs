//! The workload directory format — `agents.jsonl`, `settings.json` and `approval_flows.jsonl`
//! (all optional),
//! `users.jsonl`, `groups.jsonl`, `policies.jsonl`, `requests.jsonl` and `manifest.json` — which
//! is both Portcullis's bulk-import format (a directory exported from an identity provider) and
//! its test and benchmark workload.
//!
//! This crate owns the format and its mapping onto [`pdp::Model`]:
//! - [`format`](mod@format): one type per line, serialized in the format's key order, and the
//!   mapping between lines and the model;
//! - [`read_dir`]: streaming, validating, all-or-nothing import into a [`pdp::Model`];
//! - [`write_dir`]: deterministic output of the exact format;
//! - [`generate()`]: realistic synthetic workloads, with expected answers computed by
//!   [`Oracle`] through [`pdp::decide_reference`] on a small sub-model per request.
//!
//! It must not decide anything itself (the rule lives in `pdp` alone), and it does no logging
//! or terminal output: callers draw progress from [`Progress`] reports.

pub mod format;
pub mod generate;
pub mod oracle;
pub mod read;
pub mod write;

pub use format::{
    AgentLine, AuthenticationLine, Expected, Files, FlowLine, FlowStepLine, GroupLine, PolicyLine,
    RequestLine, ScopeLine, SettingsFile, StepUpLine, UserLine, action_name, approver_name,
    parse_action, parse_approver, parse_reason, reason_name,
};
pub use generate::{Counts, Generated, Kind, Manifest, Params, generate};
pub use oracle::Oracle;
pub use read::{
    Checked, MAX_PROBLEMS, Progress, Source, Workload, read, read_checked, read_dir, read_requests,
};
pub use write::{Contents, write_dir};

use std::path::PathBuf;

/// What can go wrong reading, writing or generating a workload.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line of a workload file is valid JSON but a field is missing or wrong.
    #[error("{file}:{line}: {field}: {problem}")]
    Field {
        file: String,
        line: u64,
        field: String,
        problem: String,
    },
    /// A line of a workload file is not a JSON object.
    #[error("{file}:{line}: malformed JSON: {problem}")]
    Json {
        file: String,
        line: u64,
        problem: String,
    },
    /// Several lines are wrong: each problem (a `Field`, `Json` or `Read` error) in the order
    /// read, one per line; `stopped` when reading stopped at [`MAX_PROBLEMS`].
    #[error("{}", problem_lines(.problems, *.stopped))]
    Problems { problems: Vec<Error>, stopped: bool },
    #[error("unknown preset `{0}`, expected small, medium or large")]
    UnknownPreset(String),
    #[error("invalid parameters: {0}")]
    Params(String),
    /// A model holds something the format cannot express.
    #[error("cannot export {what} `{id}`: {problem}")]
    Export {
        what: &'static str,
        id: String,
        problem: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Each problem this error stands for: those of [`Error::Problems`], else itself.
    pub fn problems(&self) -> &[Error] {
        match self {
            Error::Problems { problems, .. } => problems,
            other => std::slice::from_ref(other),
        }
    }
}

fn problem_lines(problems: &[Error], stopped: bool) -> String {
    let mut text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if stopped {
        text.push_str(&format!(
            "\nstopped after {MAX_PROBLEMS} problems; there may be more"
        ));
    }
    text
}
