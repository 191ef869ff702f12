//! The control socket: how `portcullis backup` asks a running `serve` for a backup of the store
//! it holds (no other process can open it).
//!
//! A Unix socket at `<data dir>/portcullis.sock`, mode 0600 (only the server's user, or root,
//! connects), made under a temporary name and renamed into place so it is never reachable with
//! looser permissions; one left by a crashed server is replaced, and it is removed on shutdown.
//!
//! The protocol is one line each way, one request per connection:
//!
//! ```text
//! backup <absolute path of a new or empty directory>\n
//! ok <revision> <bytes> <records> <paused µs> <copied under lock: 0 or 1>\n
//!    or      error <message>\n
//! ```
//!
//! A server from before the last field answers without it: the client then does not know.
//!
//! Backups run one at a time, on a blocking thread ([`store::Store::backup_to`]).

use anyhow::Context;
use live::Live;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

/// The socket's name in the data directory.
pub const SOCKET: &str = "portcullis.sock";

/// The longest request line: the command and a path.
const MAX_LINE: u64 = 8 * 1024;
/// A client that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the control socket of the store in `data_dir` is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// What a backup did, as the server answered it (or as the command saw it, offline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteBackup {
    pub revision: u64,
    pub bytes: u64,
    pub records: u64,
    pub paused: Duration,
    /// [`store::BackupSummary::copied_under_lock`]; `None` from a server too old to say.
    pub copied_under_lock: Option<bool>,
}

impl From<&store::BackupSummary> for RemoteBackup {
    fn from(summary: &store::BackupSummary) -> Self {
        Self {
            revision: summary.manifest.revision,
            bytes: summary.bytes,
            records: summary.manifest.records,
            paused: summary.paused,
            copied_under_lock: Some(summary.copied_under_lock),
        }
    }
}

/// Serves the control socket of `live`'s store until `stopped` turns true, then removes it.
/// Call it inside the runtime, once the store is open (it holds the directory, so a socket
/// already there is a crashed server's).
pub fn serve_control(
    live: Live,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let dir = live.store().dir().to_owned();
    let path = socket_path(&dir);
    let listener = bind(&path)?;
    info!(socket = %path.display(), "serving the control socket (portcullis backup)");
    let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
    Ok(tokio::spawn(async move {
        // Removes the socket however the task ends: stopped, or dropped with the runtime.
        let _remove = RemoveOnDrop(path);
        let stop = crate::net::until(stopped);
        tokio::pin!(stop);
        let mut backoff = crate::listen::Backoff::new("control socket");
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        backoff.succeeded();
                        let (live, lock) = (live.clone(), Arc::clone(&one_at_a_time));
                        tokio::spawn(async move {
                            if let Err(e) = answer(stream, live, lock).await {
                                warn!(error = %format!("{e:#}"), "a control socket request failed");
                            }
                        });
                    }
                    Err(e) => backoff.failed(&e).await,
                },
                () = &mut stop => break,
            }
        }
    }))
}

/// Binds the socket with mode 0600 at `path`, replacing whatever socket is there.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    // sun_path holds 108 bytes with the terminating NUL.
    if path.as_os_str().len() > 107 {
        anyhow::bail!(
            "cannot make the control socket `{}`: the path is {} bytes, Unix sockets allow 107 \
             (use a shorter --data-dir)",
            path.display(),
            path.as_os_str().len()
        );
    }
    let temporary = path.with_file_name(format!(".{SOCKET}.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)
        .with_context(|| format!("cannot make the control socket `{}`", temporary.display()))?;
    let placed = std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&temporary);
        return Err(e)
            .with_context(|| format!("cannot make the control socket `{}`", path.display()));
    }
    Ok(listener)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(socket = %self.0.display(), error = %e, "cannot remove the control socket")
            }
        }
    }
}

/// Reads one request, runs it and writes the answer.
async fn answer(
    stream: UnixStream,
    live: Live,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_LINE));
    tokio::time::timeout(REQUEST_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .context("no request in time")?
        .context("cannot read the request")?;
    let reply = match line
        .strip_suffix(b"\n")
        .and_then(|l| l.strip_prefix(b"backup "))
    {
        Some(out) => {
            let out = PathBuf::from(std::ffi::OsStr::from_bytes(out));
            if out.is_absolute() {
                let _one = one_at_a_time.lock().await;
                backup(&live, out).await
            } else {
                format!(
                    "error the backup path `{}` is not absolute\n",
                    out.display()
                )
            }
        }
        None => "error unknown request: expected `backup <absolute path>`\n".to_owned(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await?;
    Ok(())
}

async fn backup(live: &Live, out: PathBuf) -> String {
    let store = live.store().clone();
    let target = out.clone();
    let done = tokio::task::spawn_blocking(move || store.backup_to(&target)).await;
    match done {
        Ok(Ok(summary)) => {
            info!(
                out = %out.display(),
                revision = summary.manifest.revision,
                bytes = summary.bytes,
                records = summary.manifest.records,
                paused_ms = summary.paused.as_millis() as u64,
                copied_under_lock = summary.copied_under_lock,
                elapsed_ms = summary.elapsed.as_millis() as u64,
                "backup written"
            );
            format!(
                "ok {} {} {} {} {}\n",
                summary.manifest.revision,
                summary.bytes,
                summary.manifest.records,
                summary.paused.as_micros(),
                u8::from(summary.copied_under_lock)
            )
        }
        Ok(Err(e)) => {
            warn!(out = %out.display(), error = %e, "backup failed");
            format!("error {}\n", one_line(&e.to_string()))
        }
        Err(e) => format!(
            "error the backup task failed: {}\n",
            one_line(&e.to_string())
        ),
    }
}

fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

/// Asks the server holding `data_dir` for a backup into `out` (absolute), and waits for it.
pub fn request_backup(data_dir: &Path, out: &Path) -> anyhow::Result<RemoteBackup> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).with_context(|| {
        format!(
            "the store in `{}` is held by another process, and its control socket `{}` does \
             not answer (a server older than `portcullis backup`, or one still starting?)",
            data_dir.display(),
            path.display()
        )
    })?;
    let mut request = b"backup ".to_vec();
    request.extend_from_slice(out.as_os_str().as_bytes());
    request.push(b'\n');
    stream
        .write_all(&request)
        .with_context(|| format!("cannot send the request to `{}`", path.display()))?;
    let mut reply = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut reply)
        .with_context(|| format!("cannot read the answer from `{}`", path.display()))?;
    let reply = reply.trim_end();
    if let Some(message) = reply.strip_prefix("error ") {
        anyhow::bail!(
            "the server could not back up `{}`: {message}",
            data_dir.display()
        );
    }
    match parse_ok(reply) {
        Some(done) => Ok(done),
        None if reply.is_empty() => anyhow::bail!(
            "the server closed `{}` without answering (did it stop?)",
            path.display()
        ),
        None => anyhow::bail!("unexpected answer from `{}`: `{reply}`", path.display()),
    }
}

/// Reads an `ok` answer (without its newline); `None` if it is not one.
fn parse_ok(reply: &str) -> Option<RemoteBackup> {
    let fields: Vec<u64> = reply
        .strip_prefix("ok ")?
        .split(' ')
        .map_while(|f| f.parse().ok())
        .collect();
    let (revision, bytes, records, paused_us, rest) = match fields[..] {
        [revision, bytes, records, paused_us, ref rest @ ..] => {
            (revision, bytes, records, paused_us, rest)
        }
        _ => return None,
    };
    let copied_under_lock = match rest.first() {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(_) => return None,
    };
    Some(RemoteBackup {
        revision,
        bytes,
        records,
        paused: Duration::from_micros(paused_us),
        copied_under_lock,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ok_answer_says_whether_everything_was_copied_under_the_lock() {
        let done = |under| RemoteBackup {
            revision: 7,
            bytes: 2048,
            records: 30,
            paused: Duration::from_micros(150),
            copied_under_lock: under,
        };
        assert_eq!(parse_ok("ok 7 2048 30 150 1"), Some(done(Some(true))));
        assert_eq!(parse_ok("ok 7 2048 30 150 0"), Some(done(Some(false))));
        // A server from before the field: unknown, not a guess.
        assert_eq!(parse_ok("ok 7 2048 30 150"), Some(done(None)));
        assert_eq!(parse_ok("ok 7 2048 30 150 2"), None);
        assert_eq!(parse_ok("ok 7 2048 30"), None);
        assert_eq!(parse_ok("error nope"), None);
    }
}
