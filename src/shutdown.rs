//! How `serve` stops: on SIGINT or SIGTERM the servers stop accepting and finish the requests in
//! flight, for at most `--shutdown-grace`; then the process exits anyway. A client trickling a
//! request body, a stuck stream or a long write must not keep the process alive (an
//! orchestrator's SIGKILL would come later and less cleanly).

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::warn;

#[derive(Debug, Clone, clap::Args)]
#[group(id = "shutdown_args")]
pub struct Args {
    /// How long `serve`, after SIGINT or SIGTERM, waits for requests in flight (a SCIM write,
    /// an admin call, a slow client) before it exits anyway. What was acknowledged is durable
    /// either way.
    #[arg(
        long = "shutdown-grace",
        env = "PORTCULLIS_SHUTDOWN_GRACE",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    pub shutdown_grace: Duration,
}

/// Runs `drain` (the servers finishing once `stopped` turns true) until it ends, or until
/// `grace` has passed since `stopped` turned true: then it gives up on it, logging so, and
/// returns Ok.
pub async fn within(
    grace: Duration,
    stopped: watch::Receiver<bool>,
    drain: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let deadline = async {
        crate::net::until(stopped).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = drain => result,
        () = deadline => {
            warn!(
                grace = %humantime::format_duration(grace),
                "requests still in flight at the end of the shutdown grace period: exiting anyway"
            );
            Ok(())
        }
    }
}

/// How long the runtime waits, once `serve` returned, for blocking work still running (a
/// store write, whose commit is atomic whether it finishes or not) before the process exits.
pub const RUNTIME_GRACE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gives_up_after_the_grace_period() {
        let (stop, stopped) = watch::channel(false);
        let never = std::future::pending::<anyhow::Result<()>>();
        let started = tokio::time::Instant::now();
        let _ = stop.send(true);
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            within(Duration::from_millis(50), stopped, never),
        )
        .await;
        assert!(matches!(waited, Ok(Ok(()))));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // A drain that ends is waited for, with its error.
        let (_stop, stopped) = watch::channel(false);
        let failed = within(Duration::from_secs(30), stopped, async {
            Err(anyhow::anyhow!("boom"))
        });
        assert!(failed.await.is_err());
    }
}
