//! The retention runs of the logs `serve` keeps (the decision log, the audit log): every
//! `every`, steps of one bounded batch each on a blocking thread, until nothing is left to remove
//! or a run has removed `max`, so a backlog (a retention just shortened) is worked off a little
//! at a time beside the writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::Swept;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often, and how much, one log's retention removes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// How often a run starts.
    pub every: Duration,
    /// The most one run removes.
    pub max: usize,
}

/// Runs `step` (one batch, removing what the log's retention no longer keeps) at `pace` until
/// `stopped`. A failure is logged once, as `what`, and so is the recovery.
pub async fn run<F>(what: &'static str, pace: Pace, mut stopped: watch::Receiver<bool>, step: F)
where
    F: Fn() -> store::Result<Swept> + Send + Sync + 'static,
{
    let step = Arc::new(step);
    let mut every = tokio::time::interval(pace.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failing = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = every.tick() => {}
        }
        let (step, failing) = (Arc::clone(&step), Arc::clone(&failing));
        let _ = tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let result = loop {
                match step() {
                    Ok(swept) => {
                        removed += swept.removed as usize;
                        if !swept.more || removed >= pace.max {
                            break Ok(());
                        }
                    }
                    Err(error) => break Err(error),
                }
            };
            match result {
                Ok(()) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        info!("{what} retention works again");
                    }
                }
                Err(error) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        warn!(%error, "cannot apply the {what}'s retention");
                    }
                }
            }
        })
        .await;
    }
}
