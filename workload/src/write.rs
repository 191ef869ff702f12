//! Writing a workload directory in the exact format: one compact JSON object per line, keys in
//! the format's order, `\n` line ends. The same [`Files`] always give the same bytes.

use crate::format::Files;
use crate::generate::{Generated, Manifest};
use crate::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// What [`write_dir`] writes: the four data files, and `manifest.json` when there is one.
pub trait Contents {
    fn files(&self) -> &Files;
    fn manifest(&self) -> Option<&Manifest> {
        None
    }
}

impl Contents for Files {
    fn files(&self) -> &Files {
        self
    }
}

impl Contents for Generated {
    fn files(&self) -> &Files {
        &self.files
    }
    fn manifest(&self) -> Option<&Manifest> {
        Some(&self.manifest)
    }
}

/// Writes `users.jsonl`, `groups.jsonl`, `policies.jsonl` and `requests.jsonl` (even when
/// there are no requests, so no stale file is left behind), `agents.jsonl` when there are
/// agents, `approval_flows.jsonl` when there are flows and `settings.json` when there is a
/// setting (each removed otherwise, for the same reason), and `manifest.json` when `contents` has one, into `dir`, creating it if needed.
/// Lines are written in the order given; other files in `dir` are left alone.
pub fn write_dir(dir: &Path, contents: &impl Contents) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    let files = contents.files();
    if files.agents.is_empty() {
        remove_stale(&dir.join("agents.jsonl"))?;
    } else {
        write_lines(&dir.join("agents.jsonl"), &files.agents)?;
    }
    match &files.settings {
        None => remove_stale(&dir.join("settings.json"))?,
        Some(settings) => write_file(&dir.join("settings.json"), |out| {
            serde_json::to_writer(&mut *out, settings)?;
            out.write_all(b"\n")
        })?,
    }
    write_lines(&dir.join("users.jsonl"), &files.users)?;
    write_lines(&dir.join("groups.jsonl"), &files.groups)?;
    if files.flows.is_empty() {
        remove_stale(&dir.join("approval_flows.jsonl"))?;
    } else {
        write_lines(&dir.join("approval_flows.jsonl"), &files.flows)?;
    }
    write_lines(&dir.join("policies.jsonl"), &files.policies)?;
    write_lines(&dir.join("requests.jsonl"), &files.requests)?;
    if let Some(manifest) = contents.manifest() {
        // Indented, with a final line break, like `gen.py`'s.
        write_file(&dir.join("manifest.json"), |out| {
            serde_json::to_writer_pretty(&mut *out, manifest)?;
            out.write_all(b"\n")
        })?;
    }
    Ok(())
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(Error::Write {
            path: path.to_owned(),
            source,
        }),
        _ => Ok(()),
    }
}

fn write_lines<T: Serialize>(path: &Path, lines: &[T]) -> Result<()> {
    write_file(path, |out| {
        for line in lines {
            serde_json::to_writer(&mut *out, line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let write_error = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(write_error)?);
    body(&mut out).map_err(write_error)?;
    out.flush().map_err(write_error)
}
