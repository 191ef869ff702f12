//! `portcullis import`: a directory export (the workload format, docs/import-format.md) into the
//! directory, all or nothing. Online (`--server`): streamed to a running server's admin API
//! (ImportDirectory), which reads, checks and writes it in one audited change. Offline
//! (`--data-dir`, the default): written straight into a store no server has open, for a first
//! load. Both read the files with `workload::read` and check them with `admin::import::check`,
//! so both refuse the same files, listing every problem with its file and line.

use crate::admin_cmd::Bearer;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use portcullis_proto::v1 as pb;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Which import runs: `--server` (or PORTCULLIS_SERVER) → online; otherwise offline, into
/// `--data-dir` (default `./portcullis-data`). Both at once is an error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Offline: the store's directory, written directly (created if missing). No server may
    /// have it open. Default `./portcullis-data`.
    #[arg(long, env = "PORTCULLIS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    online: Online,
    /// A directory with users.jsonl, groups.jsonl and policies.jsonl (and optionally
    /// agents.jsonl, settings.json and approval_flows.jsonl).
    dir: PathBuf,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

/// The online import's connection: the same flags as `portcullis admin`.
#[derive(Debug, clap::Args)]
struct Online {
    /// Online: the running server's gRPC address; the import goes through its admin API with
    /// --token (an Admin token), in one audited change, while it keeps answering. Not with
    /// --data-dir.
    #[arg(long, env = "PORTCULLIS_SERVER")]
    server: Option<String>,
    /// The admin API token of an online import (an Admin token).
    #[command(flatten)]
    token: crate::admin_cmd::AdminToken,
    #[command(flatten)]
    tls: super::check::ClientTls,
    #[command(flatten)]
    profile: crate::profiles::ProfileArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let json = args.json.json;
    match (args.online.server.clone(), args.data_dir) {
        (Some(_), Some(data_dir)) => anyhow::bail!(
            "both --server (online import) and --data-dir `{}` (offline import) are given, \
             as flags or PORTCULLIS_SERVER / PORTCULLIS_DATA_DIR: pass one",
            data_dir.display()
        ),
        (Some(server), None) => online(&server, args.online, &args.dir, json),
        (None, data_dir) => offline(
            &data_dir.unwrap_or_else(|| PathBuf::from("./portcullis-data")),
            &args.dir,
            json,
        ),
    }
}

/// A progress bar in bytes, hidden automatically when stderr is not a terminal.
fn progress_bar() -> ProgressBar {
    if crate::stdout::quiet() {
        return ProgressBar::hidden();
    }
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg:>20} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    )
}

/// What an import wrote, for its confirmation.
struct Imported<'a> {
    /// `online` or `offline`.
    mode: &'static str,
    dir: &'a Path,
    users: u64,
    groups: u64,
    memberships: u64,
    policies: u64,
    agents: u64,
    flows: u64,
    /// The store's (offline) or the server's (online) revision after the import.
    revision: u64,
    elapsed: std::time::Duration,
}

/// The confirmation: a line (left out with --quiet), or the `--json` document.
fn imported(done: &Imported<'_>, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        crate::stdout::json(&serde_json::json!({
            "imported": true,
            "mode": done.mode,
            "dir": done.dir,
            "users": done.users,
            "groups": done.groups,
            "memberships": done.memberships,
            "policies": done.policies,
            "agents": done.agents,
            "approval_flows": done.flows,
            "revision": done.revision,
            "elapsed_ms": done.elapsed.as_millis() as u64,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let whose = if done.mode == "online" {
        "server"
    } else {
        "store"
    };
    crate::stdout::done(format_args!(
        "imported {} users, {} groups, {} memberships, {} policies, {} agents and {} approval flows from `{}` in {:.1}s; {whose} revision {}",
        done.users,
        done.groups,
        done.memberships,
        done.policies,
        done.agents,
        done.flows,
        done.dir.display(),
        done.elapsed.as_secs_f64(),
        done.revision
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints each problem on a line of its own on stderr (with `json`, in the document on stdout
/// instead); the import's exit code.
fn refused(problems: &[String], more: bool, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        crate::stdout::json(&serde_json::json!({
            "imported": false,
            "problems": problems,
            "more_problems": more,
        }))?;
    } else {
        for problem in problems {
            eprintln!("{problem}");
        }
    }
    let count = problems.len();
    eprintln!(
        "nothing imported: {count} problem{}{}",
        if count == 1 { "" } else { "s" },
        if more {
            format!(
                " (stopped after {}; there may be more)",
                workload::MAX_PROBLEMS
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::FAILURE)
}

fn offline(data_dir: &Path, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let store = store::Store::open(data_dir)
        .with_context(|| format!("cannot open the store in `{}`", data_dir.display()))?;
    let bar = progress_bar();
    let now = pdp::Timestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let mut flows = Vec::new();
    let read = workload::read_checked(
        workload::Source::Dir(dir),
        now,
        &mut |p: workload::Progress| {
            bar.set_message(p.file.to_string());
            bar.set_length(p.total_bytes);
            bar.set_position(p.bytes_read);
        },
        |loaded| match admin::import::check(loaded) {
            Ok(checked) => {
                flows = checked;
                Vec::new()
            }
            Err(problems) => problems,
        },
    );
    if !read.problems.is_empty() {
        bar.finish_and_clear();
        return refused(&read.problems, read.stopped, json);
    }
    let loaded = read.workload;
    bar.set_message("writing");
    let summary = store
        .import_with_flows(&loaded.model, &flows)
        .context("cannot write the import to the store")?;
    bar.finish_and_clear();
    imported(
        &Imported {
            mode: "offline",
            dir,
            users: summary.users as u64,
            groups: summary.groups as u64,
            memberships: summary.memberships as u64,
            policies: summary.policies as u64,
            agents: summary.agents as u64,
            flows: summary.flows as u64,
            revision: summary.revision,
            elapsed: started.elapsed(),
        },
        json,
    )
}

/// A directory file to send: its name and path, and its size for the progress bar.
struct ToSend {
    name: &'static str,
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

/// The import's files that exist in `dir`; a missing required one is an error.
fn files_to_send(dir: &Path) -> anyhow::Result<Vec<ToSend>> {
    const REQUIRED: [&str; 3] = ["users.jsonl", "groups.jsonl", "policies.jsonl"];
    let mut files = Vec::new();
    for name in admin::import::FILES {
        let path = dir.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !REQUIRED.contains(&name) => {
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        let size = file
            .metadata()
            .with_context(|| format!("cannot read `{}`", path.display()))?
            .len();
        files.push(ToSend {
            name,
            path,
            file,
            size,
        });
    }
    Ok(files)
}

fn online(server: &str, online: Online, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let secret = online.token.required()?;
    let bearer = Bearer::new(&secret)?;
    let files = files_to_send(dir)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let limit = admin::import::MAX_IMPORT_BYTES;
    if total > limit {
        anyhow::bail!(
            "`{}` holds {total} bytes to import, more than a server takes ({limit}): import \
             offline with --data-dir, the server stopped",
            dir.display()
        );
    }
    let addr = super::check::with_scheme(server);
    let endpoint = super::check::endpoint(&addr, &online.tls)?;
    let bar = progress_bar();
    bar.set_length(total);
    let answer = super::runtime()?.block_on(async {
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("cannot connect to `{addr}`"))?;
        let mut client =
            pb::admin_service_client::AdminServiceClient::with_interceptor(channel, bearer);
        // Read on a thread of its own, a chunk ahead of the stream.
        let (sender, chunks) = tokio::sync::mpsc::channel::<pb::ImportDirectoryChunk>(2);
        let reading_bar = bar.clone();
        let reader = tokio::task::spawn_blocking(move || send_files(files, &sender, &reading_bar));
        let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
            chunks.recv().await.map(|chunk| (chunk, chunks))
        });
        let answer = client.import_directory(stream).await;
        // The stream ended (or the call failed): the reader's error, if any, says why.
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(error) => anyhow::bail!("reading `{}` failed: {error}", dir.display()),
        }
        let answer = answer.map_err(crate::admin_cmd::status)?.into_inner();
        anyhow::Ok(answer)
    });
    bar.finish_and_clear();
    let answer = answer?;
    if !answer.problems.is_empty() {
        return refused(&answer.problems, answer.more_problems, json);
    }
    imported(
        &Imported {
            mode: "online",
            dir,
            users: answer.users,
            groups: answer.groups,
            memberships: answer.memberships,
            policies: answer.policies,
            agents: answer.agents,
            flows: answer.approval_flows,
            revision: answer.revision,
            elapsed: started.elapsed(),
        },
        json,
    )
}

/// Sends each file in chunks of at most the server's limit, advancing `bar` by what was sent,
/// then the last chunk. Stops quietly when the call ended early (the server refused): its answer
/// says why. On an error the stream ends without its last chunk, so the server imports nothing.
fn send_files(
    files: Vec<ToSend>,
    sender: &tokio::sync::mpsc::Sender<pb::ImportDirectoryChunk>,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    for ToSend {
        name,
        path,
        mut file,
        ..
    } in files
    {
        bar.set_message(name);
        loop {
            let mut data = Vec::with_capacity(admin::import::MAX_CHUNK_BYTES);
            let read = (&mut file)
                .take(admin::import::MAX_CHUNK_BYTES as u64)
                .read_to_end(&mut data)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            if read == 0 {
                break;
            }
            let chunk = pb::ImportDirectoryChunk {
                file: name.to_owned(),
                data,
                last: false,
            };
            if sender.blocking_send(chunk).is_err() {
                return Ok(());
            }
            bar.inc(read as u64);
        }
    }
    // Only now: a stream that ends without it (this thread failed) is refused whole.
    let last = pb::ImportDirectoryChunk {
        last: true,
        ..Default::default()
    };
    if sender.blocking_send(last).is_ok() {
        bar.set_message("checking and writing");
    }
    Ok(())
}
