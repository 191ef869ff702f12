//! `--decision-token-file`, `--sidecar-token-file`: the secrets a server accepts, one per line,
//! read at start and again on SIGHUP.
//!
//! Several lines are several valid secrets, so a secret is rotated without a restart or a dropped
//! stream: add the new line, SIGHUP, move the callers over, remove the old line, SIGHUP. Blank
//! lines and lines starting with `#` are skipped. A file that no longer checks out (unreadable,
//! empty, too many secrets) changes nothing and is logged naming the setting; a secret is never
//! logged, only how many there are. Streams already open stay open: a secret is checked when a
//! call or stream starts.

use anyhow::{Context, bail, ensure};
use pdp_service::RequireToken;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing::{info, warn};

/// Longest secret, in bytes.
const MAX_SECRET: usize = 4096;
/// Largest file read, in bytes: [`pdp_service::MAX_SECRETS`] of the longest secrets.
const MAX_FILE: u64 = 16 * 4200;

/// The files to read again on SIGHUP: the setting's name, the file, the secrets it feeds.
static WATCHED: Mutex<Vec<(&'static str, PathBuf, RequireToken)>> = Mutex::new(Vec::new());

/// The secrets of `path`, one per line.
pub fn read(path: &Path) -> anyhow::Result<Vec<String>> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .len();
    ensure!(
        size <= MAX_FILE,
        "`{}` has {size} bytes, the most is {MAX_FILE}",
        path.display()
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut secrets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_SECRET || line.chars().any(char::is_whitespace) {
            // Never the line itself: it may be a secret.
            bail!(
                "`{}` line {}: a secret is at most {MAX_SECRET} bytes, without spaces",
                path.display(),
                n + 1
            );
        }
        secrets.push(line.to_owned());
    }
    ensure!(!secrets.is_empty(), "`{}` holds no secret", path.display());
    Ok(secrets)
}

/// The secrets `path` holds, kept up to date on SIGHUP; `setting` names the flag in messages.
pub fn load(setting: &'static str, path: &Path) -> anyhow::Result<RequireToken> {
    let token = RequireToken::with_secrets(&read(path)?)
        .with_context(|| format!("{setting} `{}`", path.display()))?;
    if let Ok(mut watched) = WATCHED.lock() {
        watched.push((setting, path.to_owned(), token.clone()));
    }
    Ok(token)
}

/// Reads every watched file again (SIGHUP, `ReloadTokenFiles`): for each, its setting and how
/// many secrets it holds now, or why it was not taken up.
pub fn reload() -> Vec<(String, Result<usize, String>)> {
    let watched = match WATCHED.lock() {
        Ok(watched) => watched.clone(),
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::with_capacity(watched.len());
    for (setting, path, token) in watched {
        let replaced = read(&path).and_then(|secrets| Ok(token.replace(&secrets)?));
        match replaced {
            Ok(()) => {
                info!(setting, secrets = token.len(), "token file read again");
                out.push((setting.to_owned(), Ok(token.len())));
            }
            Err(error) => {
                let error = format!("{error:#}");
                warn!(
                    setting,
                    %error,
                    "the token file does not check out; its secrets are unchanged"
                );
                out.push((setting.to_owned(), Err(error)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_secrets_and_bad_files_are_refused_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "# rotated 2026-12\nold\n\n  new  \n").unwrap();
        assert_eq!(read(&path).unwrap(), ["old", "new"]);
        std::fs::write(&path, "# nothing\n\n").unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("no secret"));
        std::fs::write(&path, "one secret\n").unwrap();
        let error = read(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 1") && !error.contains("one secret"),
            "{error}"
        );
        std::fs::write(&path, "s\n".repeat(17)).unwrap();
        let error = format!("{:#}", load("--decision-token-file", &path).unwrap_err());
        assert!(error.contains("17 secrets"), "{error}");
    }
}
