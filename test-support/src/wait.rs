//! Waits for something another thread, task or process does on its own: each bounded by a
//! deadline past which the test fails naming what it waited for and what it last saw.

use std::time::{Duration, Instant};

/// How long a wait for something the server does on its own may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `probe` every 20 ms until it returns `Ok`, for at most `within`; past that, panics
/// naming `what` and the last `Err` seen, so a wait whose other side died fails with what it saw
/// instead of hanging or falling through.
pub fn wait_for<T, S: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Result<T, S>,
) -> T {
    let deadline = Deadline::new(what, within);
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) => deadline.check(&last),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] with an async probe, sleeping on the runtime between polls.
pub async fn wait_for_async<
    T,
    S: std::fmt::Debug,
    F: std::future::Future<Output = Result<T, S>>,
>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Deadline::new(what, within);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => deadline.tick(last).await,
        }
    }
}

/// Asserts that something does NOT happen: `probe` holds at every poll (each 50 ms) throughout
/// `window`, and once more at its end. An absence can only be shown over a bounded window; this
/// names the window instead of hiding it in a sleep.
pub async fn holds_for<F: std::future::Future<Output = Result<(), String>>>(
    what: &str,
    window: Duration,
    mut probe: impl FnMut() -> F,
) {
    let end = Instant::now() + window;
    loop {
        if let Err(seen) = probe().await {
            panic!("expected {what} throughout {window:?}, but: {seen}");
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

/// A wait's deadline, for polling loops whose probe borrows a client mutably (which a closure
/// handed to [`wait_for_async`] cannot): call [`Deadline::tick`] with what the probe last saw
/// after each miss; past the deadline it panics naming what was awaited and that value.
pub struct Deadline {
    what: String,
    within: Duration,
    end: Instant,
}

impl Deadline {
    pub fn new(what: impl Into<String>, within: Duration) -> Deadline {
        Deadline {
            what: what.into(),
            within,
            end: Instant::now() + within,
        }
    }

    /// Fails if the deadline passed, naming `last`.
    pub fn check(&self, last: &dyn std::fmt::Debug) {
        assert!(
            Instant::now() < self.end,
            "waited {:?} for {}; last saw {last:?}",
            self.within,
            self.what
        );
    }

    /// Fails if the deadline passed, else sleeps 20 ms on the runtime.
    pub async fn tick(&self, last: impl std::fmt::Debug) {
        self.check(&last);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_returns_the_first_ok_after_misses() {
        let mut polls = 0;
        let got = wait_for("the third poll", PATIENCE, || {
            polls += 1;
            if polls < 3 { Err(polls) } else { Ok(polls) }
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "for nothing ever; last saw \"still no\"")]
    fn wait_for_fails_past_its_deadline_naming_what_it_last_saw() {
        wait_for::<(), _>("nothing ever", Duration::from_millis(50), || {
            Err("still no")
        });
    }

    #[tokio::test]
    #[should_panic(expected = "expected quiet throughout")]
    async fn holds_for_fails_when_the_probe_breaks() {
        let mut polls = 0;
        holds_for("quiet", Duration::from_secs(5), || {
            polls += 1;
            let seen = polls;
            async move {
                if seen < 2 {
                    Ok(())
                } else {
                    Err("a sound".into())
                }
            }
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "for a change; last saw 7")]
    async fn a_deadline_ticks_until_it_passes() {
        let deadline = Deadline::new("a change", Duration::from_millis(50));
        loop {
            deadline.tick(7).await;
        }
    }
}
