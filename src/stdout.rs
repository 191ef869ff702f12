//! Command output on stdout. `print!` panics when stdout is a pipe its reader closed
//! (`portcullis admin users list | head -1`); these return the error instead, and `main` ends
//! such a command quietly with success: the reader has all it wanted.

use std::io::Write;

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

/// Whether `error` is (or was caused by) writing to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
