//! SIGHUP: what a running `serve` or `sidecar` takes up again without a restart.
//!
//! The TLS files are read again by the listeners themselves (`net::serve`). Here: the settings are
//! read again the way they were at start (the same flags and environment, the config file read
//! anew) and the log filter (`log-filter`, `RUST_LOG`) takes the new value. A file that no longer
//! checks out changes nothing and is logged, naming the key, so a typo on a live node is a warning,
//! not an outage. The token files (`--decision-token-file`, `--sidecar-token-file`) are read again
//! ([`crate::token_files`]). Every other setting applies at the next start.

use std::sync::OnceLock;
use tracing::{info, warn};
use tracing_subscriber::{EnvFilter, Registry, reload};

/// The log filter in force, set once by `init_logging`.
static LOG_FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Remembers the handle that swaps the log filter.
pub fn set_log_filter(handle: reload::Handle<EnvFilter, Registry>) {
    let _ = LOG_FILTER.set(handle);
}

/// Watches SIGHUP on the current runtime, for the life of the process.
pub fn on_sighup() -> anyhow::Result<()> {
    use anyhow::Context;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reload();
        }
    });
    Ok(())
}

/// Reads the settings again and applies the reloadable ones.
fn reload() {
    let _ = crate::token_files::reload();
    let cli = match crate::parse() {
        Ok(cli) => cli,
        Err(error) => {
            warn!(error = %format!("{error:#}"), "SIGHUP: the settings do not check out; nothing changed");
            return;
        }
    };
    let Some(handle) = LOG_FILTER.get() else {
        return;
    };
    let filter = match EnvFilter::try_new(&cli.log_filter) {
        Ok(filter) => filter,
        Err(error) => {
            warn!(%error, log_filter = %cli.log_filter, "SIGHUP: log-filter does not parse; the log filter is unchanged");
            return;
        }
    };
    let unchanged = handle
        .with_current(|current| current.to_string() == filter.to_string())
        .unwrap_or(false);
    if unchanged {
        info!("SIGHUP: settings read again; the log filter is unchanged");
        return;
    }
    match handle.reload(filter) {
        Ok(()) => info!(log_filter = %cli.log_filter, "SIGHUP: log filter reloaded"),
        Err(error) => warn!(%error, "SIGHUP: cannot swap the log filter"),
    }
}
