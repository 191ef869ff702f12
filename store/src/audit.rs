//! The audit log's reads and retention.
//!
//! Events are `a/<seq>` (module `keys`), numbered by the store as they are recorded: with a
//! change under the write lock ([`crate::Tx::audit`]), or alone for a refused attempt
//! ([`Store::append_audit`]). A number taken by a change that then committed nothing is never
//! used, so the numbers have gaps.
//!
//! **Retention** ([`Store::sweep_audit`]) removes events from the oldest: those more than
//! `max_records` numbers below the newest (so the log never holds more than `max_records`
//! events; gaps count as events, which only makes it keep a little less), then those older than
//! `max_age`, stopping at the first one young enough (events are recorded in time order, give or
//! take concurrent writers). The newest event is always kept: its number is where numbering
//! resumes when the store is reopened, and a number must never be used twice (page tokens and
//! people cite them). Each sweep removes at most `limit` events in one batch under the write
//! lock: commits wait for that batch only, and a backup (which reads everything but the
//! journal under the same lock) never sees a sweep half done.
//!
//! **Listing** ([`Store::scan_audit`]) reads newest first and examines at most a bound of
//! events per call, whatever the filter matches: a filter that matches nothing costs one bounded
//! scan per page, and the caller continues from [`AuditScan::more`].

use crate::error::engine;
use crate::records::AuditEvent;
use crate::store::{Store, catch_panic};
use crate::{Result, codec, keys, lock};
use std::time::Duration;

/// The default [`AuditRetention::max_age`]: 365 days.
pub const AUDIT_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// The default [`AuditRetention::max_records`].
pub const AUDIT_MAX_RECORDS: u64 = 1_000_000;

/// How much of the audit log to keep; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRetention {
    pub max_age: Duration,
    /// At least 1: the newest event is always kept.
    pub max_records: u64,
}

impl Default for AuditRetention {
    fn default() -> AuditRetention {
        AuditRetention {
            max_age: AUDIT_MAX_AGE,
            max_records: AUDIT_MAX_RECORDS,
        }
    }
}

/// What one sweep of a log's retention removed: the audit log's ([`Store::sweep_audit`]), and
/// the decision log's (crate `decision-log`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Records removed.
    pub removed: u64,
    /// Whether it stopped at its limit with more to remove.
    pub more: bool,
}

/// What one [`Store::scan_audit`] call found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditScan {
    /// The events kept, newest first.
    pub events: Vec<AuditEvent>,
    /// The `seq` of the last event examined, when the scan stopped at `limit` events kept or
    /// `examine` events examined rather than at the end of the log (or at `stop`): the next
    /// call continues with `before` set to it.
    pub more: Option<u64>,
}

impl Store {
    /// Audit events, newest first, with `seq` below `before` (all if `None`), that `keep`
    /// accepts, at most `limit` of them, however many it takes to examine: for tools and
    /// tests. A server answering callers uses [`Store::scan_audit`], which bounds the scan.
    pub fn audit_events(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&AuditEvent) -> bool,
        stop: impl Fn(&AuditEvent) -> bool,
    ) -> Result<Vec<AuditEvent>> {
        Ok(self
            .scan_audit(before, limit, usize::MAX, keep, stop)?
            .events)
    }

    /// Audit events, newest first, with `seq` below `before` (all if `None`), that `keep`
    /// accepts: at most `limit` of them, examining at most `examine` events. `stop` ends the
    /// scan at the first event it accepts (events are in time order, give or take the events
    /// of concurrent writers).
    pub fn scan_audit(
        &self,
        before: Option<u64>,
        limit: usize,
        examine: usize,
        keep: impl Fn(&AuditEvent) -> bool,
        stop: impl Fn(&AuditEvent) -> bool,
    ) -> Result<AuditScan> {
        let end = keys::audit(before.unwrap_or(u64::MAX));
        let mut events = Vec::new();
        let mut examined = 0;
        let mut older = self.inner.db.range(keys::AUDIT.to_vec()..end).rev();
        while let Some(item) = older.next() {
            let (key, value) = item.map_err(engine)?;
            let seq = keys::audit_seq(&key)?;
            let event: AuditEvent = codec::from_json("audit event", &seq.to_string(), &value)?;
            if stop(&event) {
                break;
            }
            examined += 1;
            if keep(&event) {
                events.push(event);
            }
            if events.len() >= limit || examined >= examine {
                // Only a bound stopped us: say where to continue, if anything is left.
                let more = older.next().is_some().then_some(seq);
                return Ok(AuditScan { events, more });
            }
        }
        Ok(AuditScan { events, more: None })
    }

    /// How many numbers the audit log spans, from its oldest event to its newest (an upper
    /// bound of how many events it holds: see the module docs).
    pub fn audit_span(&self) -> Result<u64> {
        Ok(self
            .audit_bounds()?
            .map_or(0, |(first, last)| last - first + 1))
    }

    /// Removes the oldest events `retention` no longer keeps, at most `limit` (at least one) in
    /// one batch under the write lock; see the module docs. Call it again while
    /// [`Swept::more`].
    pub fn sweep_audit(
        &self,
        retention: AuditRetention,
        now_ms: i64,
        limit: usize,
    ) -> Result<Swept> {
        catch_panic("sweeping the audit log", || {
            let _writer = lock(&self.inner.writer)?;
            self.inner.durability.check()?;
            let Some((_, last)) = self.audit_bounds()? else {
                return Ok(Swept::default());
            };
            let age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = now_ms.saturating_sub(age_ms);
            let max_records = retention.max_records.max(1);
            let mut batch = sled::Batch::default();
            let mut swept = Swept::default();
            for item in self.inner.db.range(keys::AUDIT.to_vec()..keys::audit(last)) {
                let (key, value) = item.map_err(engine)?;
                let seq = keys::audit_seq(&key)?;
                let beyond_count = seq.saturating_add(max_records) <= last;
                if !beyond_count {
                    let event: AuditEvent =
                        codec::from_json("audit event", &seq.to_string(), &value)?;
                    if event.time.0 >= cutoff {
                        break;
                    }
                }
                if swept.removed >= limit.max(1) as u64 {
                    swept.more = true;
                    break;
                }
                self.inner.written.note(&key);
                batch.remove(key);
                swept.removed += 1;
            }
            if swept.removed > 0 {
                self.inner.db.apply_batch(batch).map_err(engine)?;
            }
            Ok(swept)
        })
    }

    /// The first and last `seq` in the audit log, if it holds any.
    fn audit_bounds(&self) -> Result<Option<(u64, u64)>> {
        let mut all = self.inner.db.scan_prefix(keys::AUDIT);
        let Some(first) = all.next() else {
            return Ok(None);
        };
        let first = keys::audit_seq(&first.map_err(engine)?.0)?;
        let last = match all.next_back() {
            Some(item) => keys::audit_seq(&item.map_err(engine)?.0)?,
            None => first,
        };
        Ok(Some((first, last)))
    }
}
