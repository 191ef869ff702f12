//! Command output on stdout. `print!` panics when stdout is a pipe its reader closed
//! (`portcullis admin users list | head -1`); these return the error instead, and `main` ends
//! such a command quietly with success: the reader has all it wanted.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--quiet`: commands print only what they exist to show (docs/cli.md).
static QUIET: AtomicBool = AtomicBool::new(false);

pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `--quiet` was given: leave out confirmations, warnings, hints and progress.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: impl std::fmt::Display) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()
}

/// Writes `text` and a newline to stdout.
pub fn println(text: impl std::fmt::Display) -> std::io::Result<()> {
    print(format_args!("{text}\n"))
}

/// `--json`: the flag of every command that prints a result (docs/cli.md, "JSON output").
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct JsonArg {
    /// Print one JSON document on stdout instead of text (docs/cli.md, "JSON output"); wins
    /// over --quiet.
    #[arg(long)]
    pub json: bool,
}

/// Writes `document` as the command's one JSON document on stdout: every command's `--json`
/// goes through here, so all print alike (pretty, one trailing newline).
pub fn json(document: &impl serde::Serialize) -> anyhow::Result<()> {
    println(serde_json::to_string_pretty(document)?)?;
    Ok(())
}

/// A line confirming what a command did: left out with `--quiet`.
pub fn done(text: impl std::fmt::Display) -> std::io::Result<()> {
    if quiet() { Ok(()) } else { println(text) }
}

/// Whether `error` is (or was caused by) writing to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
