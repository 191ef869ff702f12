//! A block of decisions as the journal holds it (the encoding is in the crate docs): encoding,
//! and decoding in place, checked whole.

use crate::{BLOCK, Error, LoggedDecision, Result};
use pdp::{Action, Reason};
use store::varint;

/// Blocks are written in version 2 (each decision ends with the approval it used, if any);
/// version 1 blocks (without) are still read.
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;

fn action_code(action: Action) -> u8 {
    match action {
        Action::Allow => 1,
        Action::StepUp => 2,
        Action::RequireApproval => 3,
        Action::Deny => 4,
    }
}

fn action_of(code: u8) -> Option<Action> {
    Some(match code {
        1 => Action::Allow,
        2 => Action::StepUp,
        3 => Action::RequireApproval,
        4 => Action::Deny,
        _ => return None,
    })
}

fn reason_code(reason: Reason) -> u8 {
    match reason {
        Reason::Policy => 1,
        Reason::NoMatchingPolicy => 2,
        Reason::UserLocked => 3,
        Reason::UserInactive => 4,
        Reason::UnknownUser => 5,
        Reason::AmbiguousUser => 6,
        Reason::UnknownAgent => 7,
        Reason::AgentDisabled => 8,
        Reason::AgentNotAllowed => 9,
        Reason::StepUpMet => 10,
        Reason::Approved => 11,
    }
}

fn reason_of(code: u8) -> Option<Reason> {
    Some(match code {
        1 => Reason::Policy,
        2 => Reason::NoMatchingPolicy,
        3 => Reason::UserLocked,
        4 => Reason::UserInactive,
        5 => Reason::UnknownUser,
        6 => Reason::AmbiguousUser,
        7 => Reason::UnknownAgent,
        8 => Reason::AgentDisabled,
        9 => Reason::AgentNotAllowed,
        10 => Reason::StepUpMet,
        11 => Reason::Approved,
        _ => return None,
    })
}

/// Encodes consecutive decisions into `out` (cleared first).
pub(crate) fn encode(decisions: &[LoggedDecision], out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    varint::put(out, decisions.len() as u64);
    for d in decisions {
        out.extend_from_slice(&d.time_ms.to_be_bytes());
        varint::put(out, d.revision);
        varint::put(out, d.latency_ns);
        out.push(action_code(d.action));
        out.push(reason_code(d.reason));
        for s in [&d.decision_id, &d.user, &d.agent, &d.connector, &d.tool] {
            varint::put(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        for s in [&d.user_id, &d.policy_id, &d.approval_id] {
            match s {
                Some(s) => {
                    varint::put(out, s.len() as u64 + 1);
                    out.extend_from_slice(s.as_bytes());
                }
                None => varint::put(out, 0),
            }
        }
    }
}

fn corrupt(first: u64) -> Error {
    Error::Corrupt(format!(
        "the decision log's block at {first} does not decode"
    ))
}

/// The number of decisions in a block, from its header.
pub(crate) fn len(first: u64, bytes: &[u8]) -> Result<u64> {
    let mut rest = bytes;
    match rest.split_first() {
        Some((&(VERSION | VERSION_1), tail)) => rest = tail,
        _ => return Err(corrupt(first)),
    }
    match varint::take(&mut rest) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(corrupt(first)),
    }
}

pub(crate) fn decode(first: u64, bytes: &[u8]) -> Result<Vec<LoggedDecision>> {
    Ok((first..)
        .zip(decode_raw(first, bytes)?)
        .map(|(seq, d)| d.owned(seq))
        .collect())
}

/// A decision as its block holds it: decoded in place, copied out only when wanted.
pub(crate) struct Raw<'b> {
    pub(crate) time_ms: i64,
    revision: u64,
    latency_ns: u64,
    action: Action,
    reason: Reason,
    decision_id: &'b str,
    pub(crate) user: &'b str,
    agent: &'b str,
    connector: &'b str,
    tool: &'b str,
    pub(crate) user_id: Option<&'b str>,
    policy_id: Option<&'b str>,
    approval_id: Option<&'b str>,
}

impl Raw<'_> {
    pub(crate) fn owned(&self, seq: u64) -> LoggedDecision {
        LoggedDecision {
            seq,
            time_ms: self.time_ms,
            decision_id: self.decision_id.to_owned(),
            user: self.user.to_owned(),
            user_id: self.user_id.map(str::to_owned),
            agent: self.agent.to_owned(),
            connector: self.connector.to_owned(),
            tool: self.tool.to_owned(),
            action: self.action,
            reason: self.reason,
            policy_id: self.policy_id.map(str::to_owned),
            revision: self.revision,
            latency_ns: self.latency_ns,
            approval_id: self.approval_id.map(str::to_owned),
        }
    }
}

/// The decisions of a block, in order, checked whole.
pub(crate) fn decode_raw(first: u64, bytes: &[u8]) -> Result<Vec<Raw<'_>>> {
    let count = len(first, bytes)?;
    let version = bytes.first().copied();
    let mut rest = &bytes[1..];
    varint::take(&mut rest);
    let mut decisions = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(BLOCK));
    for _ in 0..count {
        let decision = raw(&mut rest, version == Some(VERSION)).ok_or_else(|| corrupt(first))?;
        decisions.push(decision);
    }
    if !rest.is_empty() {
        return Err(corrupt(first));
    }
    Ok(decisions)
}

/// One decision; `approval` when the block's version has the approval id.
fn raw<'b>(rest: &mut &'b [u8], approval: bool) -> Option<Raw<'b>> {
    let (time, tail) = rest.split_first_chunk::<8>()?;
    *rest = tail;
    let revision = varint::take(rest)?;
    let latency_ns = varint::take(rest)?;
    let (&[action, reason], tail) = rest.split_first_chunk::<2>()?;
    *rest = tail;
    fn string<'b>(rest: &mut &'b [u8]) -> Option<&'b str> {
        let len = usize::try_from(varint::take(rest)?).ok()?;
        let (s, tail) = rest.split_at_checked(len)?;
        *rest = tail;
        std::str::from_utf8(s).ok()
    }
    fn optional<'b>(rest: &mut &'b [u8]) -> Option<Option<&'b str>> {
        let len = usize::try_from(varint::take(rest)?).ok()?;
        if len == 0 {
            return Some(None);
        }
        let (s, tail) = rest.split_at_checked(len - 1)?;
        *rest = tail;
        std::str::from_utf8(s).ok().map(Some)
    }
    Some(Raw {
        time_ms: i64::from_be_bytes(*time),
        revision,
        latency_ns,
        action: action_of(action)?,
        reason: reason_of(reason)?,
        decision_id: string(rest)?,
        user: string(rest)?,
        agent: string(rest)?,
        connector: string(rest)?,
        tool: string(rest)?,
        user_id: optional(rest)?,
        policy_id: optional(rest)?,
        approval_id: if approval { optional(rest)? } else { None },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> LoggedDecision {
        LoggedDecision {
            seq,
            time_ms: 1_767_225_600_123,
            decision_id: "00000000deadbeef0000000000000001".into(),
            user: "Alice@Example.com".into(),
            user_id: Some("u1".into()),
            agent: "claude".into(),
            connector: "github".into(),
            tool: "create_issue".into(),
            action: Action::RequireApproval,
            reason: Reason::Policy,
            policy_id: Some("p-1".into()),
            revision: 1 << 40,
            latency_ns: 12_345,
            approval_id: Some("apr_0001".into()),
        }
    }

    #[test]
    fn version_1_blocks_still_decode() {
        // A version 1 block: the same layout without the approval id.
        let mut old = sample(3);
        old.approval_id = None;
        let mut bytes = Vec::new();
        encode(std::slice::from_ref(&old), &mut bytes);
        bytes[0] = VERSION_1;
        assert_eq!(
            bytes.pop(),
            Some(0),
            "the absent approval id is the last byte"
        );
        assert_eq!(decode(3, &bytes).unwrap(), vec![old]);
    }

    #[test]
    fn blocks_round_trip() {
        let bare = LoggedDecision {
            user_id: None,
            policy_id: None,
            action: Action::Deny,
            reason: Reason::UnknownUser,
            time_ms: -1,
            revision: 0,
            latency_ns: u64::MAX,
            agent: String::new(),
            approval_id: None,
            ..sample(8)
        };
        let block = [sample(7), bare];
        let mut bytes = Vec::new();
        encode(&block, &mut bytes);
        assert_eq!(decode(7, &bytes).unwrap(), block);
        assert_eq!(len(7, &bytes).unwrap(), 2);
    }

    #[test]
    fn bad_blocks_are_corrupt() {
        let mut bytes = Vec::new();
        encode(&[sample(1), sample(2)], &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(1, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(1, &longer).is_err());
        let mut version = bytes;
        version[0] = 9;
        let error = decode(3, &version).unwrap_err().to_string();
        assert!(error.contains("block at 3"), "{error}");
        assert!(len(1, &[VERSION, 0]).is_err());
    }
}
