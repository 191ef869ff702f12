//! ImportDirectory: a directory export (docs/import-format.md) into the running server, in one
//! transaction with one audit event (`directory.import`). The client streams the files in
//! chunks; the server reads them with the offline import's reader (`workload::read`) and checks
//! them with [`check`], which the offline `portcullis import` calls too, so both refuse the same
//! files. Every problem found is answered, with its file and line, and then nothing is written.

use crate::auth::Caller;
use crate::{Error, Result, clock};
use live::Live;
use portcullis_proto::v1 as pb;
use std::collections::BTreeMap;
use std::time::Duration;

/// The files an import sends: what the model is read from (`requests.jsonl` and
/// `manifest.json` are not part of it).
pub const FILES: [&str; 6] = [
    "agents.jsonl",
    "settings.json",
    "users.jsonl",
    "groups.jsonl",
    "approval_flows.jsonl",
    "policies.jsonl",
];
/// Largest chunk of file data one message carries, in bytes.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// Largest import, every file together, in bytes: the server holds the files in memory while it
/// reads them (the large preset, a million users, is about a third of it).
pub const MAX_IMPORT_BYTES: u64 = 1 << 30;
/// Longest an import may take to arrive: a stalled client does not keep the import slot.
pub const MAX_RECEIVE_TIME: Duration = Duration::from_secs(15 * 60);

/// Checks a workload as read by `workload::read` the way the admin API checks what it writes:
/// every policy as CreatePolicy does (but for ids an `all_users` scope lists), every approval flow as CreateApprovalFlow does (against the
/// imported directory, at most [`crate::approvals::flows::MAX_FLOWS`]). Returns the flows as
/// they are stored, or every problem (at most `workload::MAX_PROBLEMS`), each
/// `file:line: field: problem`.
pub fn check(
    loaded: &workload::Workload,
) -> std::result::Result<Vec<pdp::ApprovalFlow>, Vec<String>> {
    let line = |lines: &[u64], i: usize| lines.get(i).copied().unwrap_or_default();
    let mut problems = Vec::new();
    for (i, policy) in loaded.model.policies.iter().enumerate() {
        // The format lets an `all_users` scope still list ids (exports and generated
        // workloads do; they change nothing), which the API refuses as a likely mistake:
        // every other rule applies as written.
        let listed_with_all = policy.scope.all_users
            && !(policy.scope.users.is_empty() && policy.scope.groups.is_empty());
        let checked = if listed_with_all {
            let mut policy = policy.clone();
            policy.scope.users.clear();
            policy.scope.groups.clear();
            crate::policies::check(&policy)
        } else {
            crate::policies::check(policy)
        };
        if let Err(error) = checked {
            problems.push(format!(
                "policies.jsonl:{}: {error}",
                line(&loaded.policy_lines, i)
            ));
        }
    }
    let limit = crate::approvals::flows::MAX_FLOWS;
    if loaded.flows.len() > limit {
        problems.push(format!(
            "approval_flows.jsonl: {} flows, the limit is {limit}",
            loaded.flows.len()
        ));
    }
    let mut flows = Vec::with_capacity(loaded.flows.len());
    if !loaded.flows.is_empty() {
        let view = store::View::from_model(loaded.model.clone());
        for (i, flow) in loaded.flows.iter().enumerate() {
            match crate::approvals::flows::check_flow(&view, flow) {
                Ok(flow) => flows.push(flow),
                Err(error) => problems.push(format!(
                    "approval_flows.jsonl:{}: flow `{}`: {error}",
                    line(&loaded.flow_lines, i),
                    flow.id
                )),
            }
        }
    }
    if problems.is_empty() {
        Ok(flows)
    } else {
        problems.truncate(workload::MAX_PROBLEMS);
        Err(problems)
    }
}

/// What the write refused: problems of the directory against the stored state (an agent alias
/// another agent has…), answered as problems, or a failure.
enum Abort {
    Refused(String),
    Failed(Error),
}

impl From<store::Error> for Abort {
    fn from(error: store::Error) -> Abort {
        match Error::from(error) {
            // What the store checks against the stored state: the directory's problem.
            Error::FailedPrecondition(problem) => Abort::Refused(problem),
            Error::InvalidArgument { field, problem } => {
                Abort::Refused(format!("{field}: {problem}"))
            }
            other => Abort::Failed(other),
        }
    }
}

impl From<live::Error> for Abort {
    fn from(error: live::Error) -> Abort {
        match error {
            live::Error::Store(error) => error.into(),
            other => Abort::Failed(other.into()),
        }
    }
}

pub(crate) async fn import(
    live: &Live,
    caller: Caller,
    chunks: tonic::Streaming<pb::ImportDirectoryChunk>,
) -> Result<pb::ImportDirectoryResponse> {
    let files = tokio::time::timeout(MAX_RECEIVE_TIME, receive(chunks))
        .await
        .map_err(|_| {
            Error::FailedPrecondition(format!(
                "the import took longer than {} to arrive",
                humantime::format_duration(MAX_RECEIVE_TIME)
            ))
        })??;
    let now = clock::now();
    let checked = tokio::task::spawn_blocking(move || {
        let mut flows = Vec::new();
        let read = workload::read_checked(workload::Source::Files(&files), now, &mut |_| {}, |w| {
            match check(w) {
                Ok(checked) => {
                    flows = checked;
                    Vec::new()
                }
                Err(problems) => problems,
            }
        });
        if read.problems.is_empty() {
            Ok((read.workload.model, flows))
        } else {
            Err((read.problems, read.stopped))
        }
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?;
    let (model, flows) = match checked {
        Ok(checked) => checked,
        Err((problems, stopped)) => return refused(live, problems, stopped),
    };
    let written = live
        .write(move |tx| -> std::result::Result<store::ImportSummary, Abort> {
            let summary = tx.import(&model, &flows)?;
            let mut event = caller.event("directory.import", "directory", "");
            event.detail = format!(
                "{} users, {} groups, {} memberships, {} policies, {} agents, {} approval flows",
                summary.users,
                summary.groups,
                summary.memberships,
                summary.policies,
                summary.agents,
                summary.flows
            );
            tx.audit(event)?;
            Ok(summary)
        })
        .await;
    let summary = match written {
        Ok((_, summary)) => summary,
        Err(Abort::Refused(problem)) => return refused(live, vec![problem], false),
        Err(Abort::Failed(error)) => return Err(error),
    };
    let count = |n: usize| n as u64;
    Ok(pb::ImportDirectoryResponse {
        problems: Vec::new(),
        more_problems: false,
        revision: summary.revision,
        users: count(summary.users),
        groups: count(summary.groups),
        memberships: count(summary.memberships),
        policies: count(summary.policies),
        agents: count(summary.agents),
        approval_flows: count(summary.flows),
    })
}

/// The files of the stream, each whole, within the limits.
async fn receive(
    mut chunks: tonic::Streaming<pb::ImportDirectoryChunk>,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut total: u64 = 0;
    let mut finished = false;
    while let Some(chunk) = chunks
        .message()
        .await
        .map_err(|status| Error::invalid("chunks", status.message().to_owned()))?
    {
        let pb::ImportDirectoryChunk { file, data, last } = chunk;
        if finished {
            return Err(Error::invalid("last", "a chunk after the last one"));
        }
        finished = last;
        if last && file.is_empty() && data.is_empty() {
            continue;
        }
        if !FILES.contains(&file.as_str()) {
            // Named only when short: it is the client's input.
            let named = if file.len() <= 64 {
                format!("`{file}`")
            } else {
                format!("a {}-byte name", file.len())
            };
            return Err(Error::invalid(
                "file",
                format!(
                    "{named} is not a file of a directory import, expected one of {}",
                    FILES.join(", ")
                ),
            ));
        }
        if data.len() > MAX_CHUNK_BYTES {
            return Err(Error::invalid(
                "data",
                format!(
                    "{} bytes in one chunk, the limit is {MAX_CHUNK_BYTES}",
                    data.len()
                ),
            ));
        }
        total += data.len() as u64;
        if total > MAX_IMPORT_BYTES {
            return Err(Error::invalid(
                "data",
                format!("more than {MAX_IMPORT_BYTES} bytes in all, the limit"),
            ));
        }
        files.entry(file).or_default().extend_from_slice(&data);
    }
    if !finished {
        return Err(Error::invalid(
            "last",
            "the stream ended without its last chunk (the client stopped midway): nothing imported",
        ));
    }
    Ok(files)
}

/// The answer to a directory with problems: nothing was written.
fn refused(
    live: &Live,
    problems: Vec<String>,
    more_problems: bool,
) -> Result<pb::ImportDirectoryResponse> {
    Ok(pb::ImportDirectoryResponse {
        problems,
        more_problems,
        revision: live.view()?.revision(),
        ..Default::default()
    })
}
