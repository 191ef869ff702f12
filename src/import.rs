//! `portcullis import`: a directory export (the workload format, docs/import-format.md) into the
//! store, in one atomic change.

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store's directory (created if missing).
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = "./portcullis-data")]
    data_dir: PathBuf,
    /// A directory with users.jsonl, groups.jsonl and policies.jsonl (and optionally
    /// agents.jsonl, settings.json and approval_flows.jsonl).
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let store = store::Store::open(&args.data_dir)
        .with_context(|| format!("cannot open the store in `{}`", args.data_dir.display()))?;

    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{msg:>16} [{bar:40}] {binary_bytes}/{binary_total_bytes} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let now = pdp::Timestamp(time::OffsetDateTime::now_utc().unix_timestamp() * 1000);
    let loaded = workload::read_dir(&args.dir, now, &mut |p: workload::Progress| {
        bar.set_message(p.file.to_string());
        bar.set_length(p.total_bytes);
        bar.set_position(p.bytes_read);
    })
    .with_context(|| format!("cannot import `{}`", args.dir.display()))?;
    let flows = checked_flows(&loaded)?;
    bar.set_message("writing");
    let summary = store
        .import_with_flows(&loaded.model, &flows)
        .context("cannot write the import to the store")?;
    bar.finish_and_clear();
    crate::stdout::println(format_args!(
        "imported {} users, {} groups, {} memberships, {} policies and {} approval flows from `{}` in {:.1}s; store revision {}",
        summary.users,
        summary.groups,
        summary.memberships,
        summary.policies,
        summary.flows,
        args.dir.display(),
        started.elapsed().as_secs_f64(),
        summary.revision
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The workload's approval flows checked as the admin API checks them (bounds, and whether
/// each step's approvers can give its `min_approvals`), against the imported directory.
fn checked_flows(loaded: &workload::Workload) -> anyhow::Result<Vec<pdp::ApprovalFlow>> {
    if loaded.flows.is_empty() {
        return Ok(Vec::new());
    }
    let limit = admin::approvals::flows::MAX_FLOWS;
    if loaded.flows.len() > limit {
        anyhow::bail!(
            "approval_flows.jsonl: {} flows, the limit is {limit}",
            loaded.flows.len()
        );
    }
    let view = store::View::from_model(loaded.model.clone());
    loaded
        .flows
        .iter()
        .map(|flow| {
            admin::approvals::flows::check_flow(&view, flow)
                .map_err(|e| anyhow::anyhow!("approval_flows.jsonl: flow `{}`: {e}", flow.id))
        })
        .collect()
}
