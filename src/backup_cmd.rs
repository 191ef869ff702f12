//! `portcullis backup` and `portcullis restore`: a consistent copy of the store, taken while it
//! serves, and putting one back on a stopped node (docs/operations.md).

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::control;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The store's directory. If `portcullis serve` holds it, the server takes the backup
    /// (through its control socket, `<data dir>/portcullis.sock`); else it is read directly.
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// Where to write the backup: a directory that does not exist yet, or is empty.
    out: PathBuf,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The directory to restore into: it must not exist or be empty, and no server may run on
    /// it. Start `portcullis serve --data-dir` on it afterwards.
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// A directory `portcullis backup` wrote.
    backup: PathBuf,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = &args.data_dir;
    // Opening creates a missing directory: a typo must not back up a new, empty store.
    anyhow::ensure!(
        dir.is_dir(),
        "there is no data directory `{}`",
        dir.display()
    );
    // The server resolves relative paths against its own working directory.
    let out = std::path::absolute(&args.out)
        .with_context(|| format!("cannot resolve `{}`", args.out.display()))?;
    let (done, by_server) = match store::Store::open(dir) {
        Ok(store) => {
            let summary = store
                .backup_to(&out)
                .with_context(|| format!("cannot back up `{}`", dir.display()))?;
            (control::RemoteBackup::from(&summary), false)
        }
        Err(store::Error::Locked { .. }) => (control::request_backup(dir, &out)?, true),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot open the store in `{}`", dir.display()));
        }
    };
    let control::RemoteBackup {
        revision,
        bytes,
        records,
        paused,
        copied_under_lock,
    } = done;
    let elapsed = started.elapsed();
    if args.json.json {
        crate::stdout::json(&serde_json::json!({
            "revision": revision,
            "data_dir": dir,
            "out": out,
            "taken_by_server": by_server,
            "records": records,
            "bytes": bytes,
            "elapsed_ms": elapsed.as_millis() as u64,
            "writes_paused_ms": paused.as_secs_f64() * 1000.0,
            // null from a server too old to say.
            "copied_under_lock": copied_under_lock,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let via = if by_server {
        " (taken by the running server)"
    } else {
        ""
    };
    crate::stdout::done(format_args!(
        "backed up revision {revision} of `{}` to `{}`{via}: {records} records, {} in {:.1}s; \
         writes paused {}{}",
        dir.display(),
        out.display(),
        size(bytes),
        elapsed.as_secs_f64(),
        millis(paused),
        why_paused(copied_under_lock),
    ))?;
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let summary = store::Store::restore(&args.backup, &args.data_dir).with_context(|| {
        format!(
            "cannot restore `{}` into `{}`",
            args.backup.display(),
            args.data_dir.display()
        )
    })?;
    let m = &summary.manifest;
    if args.json.json {
        crate::stdout::json(&serde_json::json!({
            "revision": summary.revision,
            "data_dir": args.data_dir,
            "backup": args.backup,
            "taken_at": taken(m.created_at_ms),
            "users": m.users,
            "groups": m.groups,
            "policies": m.policies,
            "records": m.records,
            "bytes": m.bytes,
            "elapsed_ms": summary.elapsed.as_millis() as u64,
            "store_id": summary.store_id,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::stdout::done(format_args!(
        "restored revision {} into `{}` from `{}` (taken {}): {} users, {} groups, {} policies, \
         {} records, {} in {:.1}s; new store id {}",
        summary.revision,
        args.data_dir.display(),
        args.backup.display(),
        taken(m.created_at_ms),
        m.users,
        m.groups,
        m.policies,
        m.records,
        size(m.bytes),
        summary.elapsed.as_secs_f64(),
        summary.store_id,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// Says why writes were paused for the whole copy, when they were: the pause is then in
/// proportion to the store, and an operator who sees a long one should know it was not a fault.
fn why_paused(copied_under_lock: Option<bool>) -> &'static str {
    match copied_under_lock {
        Some(true) => {
            " (everything was copied under the write lock: more keys were written during the \
             copy than a backup tracks, or another backup was running)"
        }
        Some(false) | None => "",
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// When a backup was taken, as RFC 3339 UTC.
fn taken(ms: i64) -> String {
    pdp::Timestamp(ms)
        .rfc3339()
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}
