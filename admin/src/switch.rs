//! Turning a record's on/off switch (SetAgentEnabled, SetPolicyEnabled): the one way it is
//! written and audited, whatever the record.

use crate::auth::Caller;
use crate::{Error, Result, audit, clock};
use pdp::{Agent, Policy, Timestamp};
use serde::Serialize;
use store::Tx;

/// A record with an `enabled` switch.
pub(crate) trait Switched: Clone + Serialize + Sized {
    /// What the audit log and errors call it (`agent`, `policy`).
    const KIND: &'static str;
    fn read(tx: &Tx<'_, '_>, id: &str) -> store::Result<Option<Self>>;
    fn write(&self, tx: &mut Tx<'_, '_>) -> store::Result<()>;
    /// The switch and when the record last changed.
    fn parts(&mut self) -> (&mut bool, &mut Timestamp);
}

/// The two records with a switch: their kind, and the transaction's read and write of them.
macro_rules! switched {
    ($($record:ty: $kind:literal, $read:ident, $write:ident;)*) => {$(
        impl Switched for $record {
            const KIND: &'static str = $kind;
            fn read(tx: &Tx<'_, '_>, id: &str) -> store::Result<Option<Self>> {
                tx.$read(id)
            }
            fn write(&self, tx: &mut Tx<'_, '_>) -> store::Result<()> {
                tx.$write(self)
            }
            fn parts(&mut self) -> (&mut bool, &mut Timestamp) {
                (&mut self.enabled, &mut self.updated_at)
            }
        }
    )*};
}

switched! {
    Agent: "agent", agent, put_agent;
    Policy: "policy", policy, put_policy;
}

/// Turns record `id`'s switch to `enabled` in `tx`, audited as `{kind}.enable` or
/// `{kind}.disable` with `detail`, before and after. A record already so is returned as it is,
/// with nothing written: turning it again is not a change.
pub(crate) fn set<T: Switched>(
    tx: &mut Tx<'_, '_>,
    caller: &Caller,
    id: &str,
    enabled: bool,
    detail: String,
) -> Result<T> {
    let before = T::read(tx, id)?.ok_or_else(|| Error::not_found(T::KIND, id))?;
    let mut after = before.clone();
    let (switch, updated_at) = after.parts();
    if *switch == enabled {
        return Ok(before);
    }
    *switch = enabled;
    *updated_at = clock::now();
    after.write(tx)?;
    let verb = if enabled { "enable" } else { "disable" };
    let mut event = caller.event(&format!("{}.{verb}", T::KIND), T::KIND, id);
    event.detail = detail;
    event.before = audit::json(&before);
    event.after = audit::json(&after);
    tx.audit(event)?;
    Ok(after)
}
