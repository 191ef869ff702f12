//! Files only the server's user can read: the store holds token hashes, personal data and the
//! audit log, the decision log says who did what.
//!
//! Every command runs with umask 077, whatever umask it inherited, so whatever it creates (the
//! data directory, sled's files, the decision-log file, backups) is 0700 for directories and
//! 0600 for files: sled opens its files with the default mode, and the umask is the one place
//! that reaches all of them. `serve` also tightens a data directory created looser (by an older
//! version, or copied in) at start, and logs what it changed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tracing::warn;

/// Directories: the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Files: the owner reads and writes.
pub const FILE_MODE: u32 = 0o600;

/// Makes everything this process creates from now on private to its user. Call it first, before
/// any thread starts: the umask is per process.
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Tightens `dir` and everything under it that group or others can reach: directories to
/// [`DIR_MODE`], files to [`FILE_MODE`] (symbolic links are not followed); logs how many it
/// changed. Returns that count.
pub fn tighten(dir: &Path) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        // The data directory itself may be a link to where the data lives; links under it are
        // not followed.
        let meta = if path == dir {
            std::fs::metadata(&path)?
        } else {
            std::fs::symlink_metadata(&path)?
        };
        let mode = meta.permissions().mode() & 0o7777;
        let wanted = if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            DIR_MODE
        } else if meta.is_file() {
            FILE_MODE
        } else {
            // Symbolic links have no mode of their own; the control socket is made 0600.
            continue;
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
            changed += 1;
        }
    }
    if changed > 0 {
        warn!(
            dir = %dir.display(),
            changed,
            "group or others could read the data directory: tightened to 0700 (directories) and 0600 (files)"
        );
    }
    Ok(changed)
}

/// Tightens one file to [`FILE_MODE`] if group or others can read it, logging it.
pub fn tighten_file(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        warn!(file = %path.display(), was = format!("{mode:o}"), "tightened the file's mode to 0600");
    }
    Ok(())
}
