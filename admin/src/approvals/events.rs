//! What happens to approval requests, for those who want to hear of it (webhooks).
//!
//! Every transition of a request produces one [`Event`], handed to the [`Outbox`] inside the
//! transaction that makes the transition: the notification is durable exactly when the
//! transition is, and a crash loses neither.

use pdp::{ApprovalRequest, Timestamp};

/// The kinds of event, named as webhook payloads' `type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Created,
    Escalated,
    Approved,
    Denied,
    Expired,
    Cancelled,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::Created,
        EventType::Escalated,
        EventType::Approved,
        EventType::Denied,
        EventType::Expired,
        EventType::Cancelled,
    ];

    /// `approval.created`, `approval.escalated`, …
    pub fn name(self) -> &'static str {
        match self {
            EventType::Created => "approval.created",
            EventType::Escalated => "approval.escalated",
            EventType::Approved => "approval.approved",
            EventType::Denied => "approval.denied",
            EventType::Expired => "approval.expired",
            EventType::Cancelled => "approval.cancelled",
        }
    }

    /// The inverse of [`EventType::name`].
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One transition of one request: the request as the transition leaves it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub kind: EventType,
    pub request: &'a ApprovalRequest,
    /// Who caused it: an approver's user id, `gateway`, or `system` (escalation, expiry).
    pub actor: &'a str,
    pub at: Timestamp,
}

/// Where events go: a durable outbox written in the transition's own transaction.
pub trait Outbox: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `event` for delivery, in `tx` (so it commits, or not, with the transition).
    fn enqueue(&self, tx: &mut store::Tx<'_, '_>, event: &Event<'_>) -> store::Result<()>;

    /// Called once `tx` committed: wake the deliverer.
    fn committed(&self);
}
