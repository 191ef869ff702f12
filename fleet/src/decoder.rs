//! The snapshot stream as a sidecar reads it: each event of a connection checked and turned
//! into what the sidecar applies (a whole snapshot's model, a change, approval state), with
//! nothing of the network in it, so that the follower and the fuzz target run the same code.

use crate::{Error, FORMAT, Result, wire};
use pb::watch_event::Event;
use pdp::{Group, Membership, MembershipSource, Model, Policy, Timestamp, User};
use portcullis_proto::v1 as pb;
use std::collections::BTreeSet;
use std::time::Instant;
use store::View;
use store::view::Update;
use tracing::info;

/// Where the stream stands: what was received (not necessarily applied yet), which is where
/// a reconnect resumes.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) store_id: String,
    pub(crate) revision: u64,
}

/// What one event completes.
pub(crate) enum Decoded {
    /// A whole snapshot, checked to be complete.
    Full {
        model: Model,
        store_id: String,
        started: Instant,
        bytes: u64,
    },
    /// A whole change (all its parts).
    Change(Delta),
    /// A whole approval update (all its parts).
    Approvals(Vec<pb::ApprovalUpdate>),
    /// The control plane's revision now.
    Heartbeat(u64),
    /// A part of something not yet whole.
    Nothing,
}

/// The parts received so far of one connection's snapshot, change and approval update.
#[derive(Default)]
pub(crate) struct Decoder {
    full: Option<Partial>,
    change: Option<Delta>,
    approvals: Vec<pb::ApprovalUpdate>,
}

impl Decoder {
    /// Takes one event (`size`: its encoded length) of the stream; `received` moves on with
    /// each whole snapshot or change. An error ends the connection: the stream is not what the
    /// protocol says.
    pub(crate) fn event(
        &mut self,
        event: Event,
        size: u64,
        received: &mut Received,
    ) -> Result<Decoded> {
        Ok(match event {
            Event::Begin(begin) => {
                self.change = None;
                self.full = Some(Partial::new(begin, size)?);
                Decoded::Nothing
            }
            Event::Chunk(chunk) => {
                let partial = self
                    .full
                    .as_mut()
                    .ok_or_else(|| Error::Stream("a snapshot chunk outside a snapshot".into()))?;
                partial.bytes += size;
                partial.add(chunk)?;
                Decoded::Nothing
            }
            Event::End(end) => {
                let partial = self
                    .full
                    .take()
                    .ok_or_else(|| Error::Stream("a snapshot end outside a snapshot".into()))?;
                let (started, bytes) = (partial.started, partial.bytes + size);
                let (model, store_id) = partial.finish(&end)?;
                info!(
                    revision = end.revision,
                    users = model.users.len(),
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "full snapshot received; building it"
                );
                received.store_id.clone_from(&store_id);
                received.revision = end.revision;
                Decoded::Full {
                    model,
                    store_id,
                    started,
                    bytes,
                }
            }
            Event::Change(part) => {
                if self.full.is_some() || received.store_id.is_empty() {
                    return Err(Error::Stream("a change before a whole snapshot".into()));
                }
                let delta = self.change.get_or_insert_with(|| Delta {
                    from: part.from_revision,
                    revision: part.revision,
                    ..Delta::default()
                });
                if part.from_revision != received.revision
                    || (delta.from, delta.revision) != (part.from_revision, part.revision)
                {
                    return Err(Error::Stream(format!(
                        "a change from revision {} to {} arrived at revision {}",
                        part.from_revision, part.revision, received.revision
                    )));
                }
                let continued = part.continued;
                delta.add(part)?;
                match self.change.take() {
                    Some(delta) if !continued => {
                        received.revision = delta.revision;
                        Decoded::Change(delta)
                    }
                    unfinished => {
                        self.change = unfinished;
                        Decoded::Nothing
                    }
                }
            }
            Event::Heartbeat(beat) => Decoded::Heartbeat(beat.revision),
            Event::Approvals(part) => {
                let continued = part.continued;
                self.approvals.push(part);
                if continued {
                    Decoded::Nothing
                } else {
                    Decoded::Approvals(std::mem::take(&mut self.approvals))
                }
            }
        })
    }
}

/// A full snapshot being received.
struct Partial {
    begin: pb::SnapshotBegin,
    group_ids: Vec<String>,
    model: Model,
    started: Instant,
    bytes: u64,
}

impl Partial {
    fn new(begin: pb::SnapshotBegin, bytes: u64) -> Result<Partial> {
        if begin.format != FORMAT {
            return Err(Error::Stream(format!(
                "the snapshot is in format {}, this sidecar reads format {FORMAT}",
                begin.format
            )));
        }
        let (agents, settings) = match &begin.registry {
            Some(registry) => wire::registry_from(registry)?,
            None => (Vec::new(), pdp::Settings::default()),
        };
        Ok(Partial {
            model: Model {
                revision: begin.revision,
                agents,
                settings,
                ..Model::default()
            },
            begin,
            group_ids: Vec::new(),
            started: Instant::now(),
            bytes,
        })
    }

    fn add(&mut self, chunk: pb::SnapshotChunk) -> Result<()> {
        for id in chunk.group_ids {
            self.model.groups.push(Group {
                id: id.clone(),
                ..Group::default()
            });
            self.group_ids.push(id);
        }
        for bytes in &chunk.policies {
            self.model.policies.push(wire::policy_from(bytes)?);
        }

        for record in &chunk.users {
            let user = wire::user_from(record)?;
            for &index in &record.group_indexes {
                let group_id = self.group_ids.get(index as usize).ok_or_else(|| {
                    Error::Stream(format!(
                        "user `{}` names group {index} of {} so far",
                        user.id,
                        self.group_ids.len()
                    ))
                })?;
                self.model.memberships.push(Membership {
                    group_id: group_id.clone(),
                    user_id: user.id.clone(),
                    joined_at: Timestamp(0),
                    source: MembershipSource::default(),
                });
            }
            self.model.users.push(user);
        }
        Ok(())
    }

    /// The model, once it is checked to be whole.
    fn finish(self, end: &pb::SnapshotEnd) -> Result<(Model, String)> {
        let b = &self.begin;
        let got = (
            end.revision,
            self.model.users.len() as u64,
            self.model.groups.len() as u64,
            self.model.policies.len() as u64,
            self.model.memberships.len() as u64,
        );
        let announced = (b.revision, b.users, b.groups, b.policies, b.memberships);
        if got != announced {
            return Err(Error::Stream(format!(
                "the snapshot announced (revision, users, groups, policies, memberships) \
                 {announced:?} but carried {got:?}"
            )));
        }
        Ok((self.model, self.begin.store_id))
    }
}

/// A change, decoded and checked.
#[derive(Default)]
pub(crate) struct Delta {
    from: u64,
    pub(crate) revision: u64,
    users: Vec<(User, Vec<String>)>,
    removed_users: Vec<String>,
    groups: Vec<String>,
    removed_groups: Vec<String>,
    policies: Vec<Policy>,
    removed_policies: Vec<String>,
    /// The whole agent registry and settings, when they changed.
    registry: Option<(Vec<pdp::Agent>, pdp::Settings)>,
}

impl Delta {
    /// Adds one part of a change (all parts share their revisions).
    fn add(&mut self, part: pb::DirectoryChange) -> Result<()> {
        for record in &part.users {
            self.users
                .push((wire::user_from(record)?, record.group_ids.clone()));
        }
        self.removed_users.extend(part.removed_users);
        self.groups.extend(part.groups);
        self.removed_groups.extend(part.removed_groups);
        for bytes in &part.policies {
            self.policies.push(wire::policy_from(bytes)?);
        }
        self.removed_policies.extend(part.removed_policies);
        if let Some(registry) = &part.registry {
            self.registry = Some(wire::registry_from(registry)?);
        }
        Ok(())
    }

    /// The updates that take `view` to this change's revision. Memberships the stream implies
    /// (a user's groups are all listed; a removed user or group takes theirs along) become
    /// explicit, as the store writes them.
    pub(crate) fn updates(self, view: &View) -> Vec<Update> {
        let mut updates = Vec::new();
        let member = |group_id: &str, user_id: &str| Membership {
            group_id: group_id.to_owned(),
            user_id: user_id.to_owned(),
            joined_at: Timestamp(0),
            source: MembershipSource::default(),
        };
        for id in self.groups {
            updates.push(Update::Group(
                id.clone(),
                Some(Group {
                    id,
                    ..Group::default()
                }),
            ));
        }
        for id in self.removed_groups {
            for (user, _) in view.members_of(&id) {
                updates.push(Update::Member(id.clone(), user.to_string(), None));
            }
            updates.push(Update::Group(id, None));
        }
        for id in self.removed_users {
            for (group, _) in view.groups_of(&id) {
                updates.push(Update::Member(group.to_string(), id.clone(), None));
            }
            updates.push(Update::User(id, None));
        }
        for (user, groups) in self.users {
            let now: BTreeSet<String> = groups.into_iter().collect();
            let before: BTreeSet<String> = view
                .groups_of(&user.id)
                .map(|(g, _)| g.to_string())
                .collect();
            for gone in before.difference(&now) {
                updates.push(Update::Member(gone.clone(), user.id.clone(), None));
            }
            for joined in now.difference(&before) {
                updates.push(Update::Member(
                    joined.clone(),
                    user.id.clone(),
                    Some(member(joined, &user.id)),
                ));
            }
            updates.push(Update::User(user.id.clone(), Some(user)));
        }
        for policy in self.policies {
            updates.push(Update::Policy(policy.id.clone(), Some(policy)));
        }
        for id in self.removed_policies {
            updates.push(Update::Policy(id, None));
        }
        if let Some((agents, settings)) = self.registry {
            let kept: BTreeSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
            for gone in view.agents().filter(|a| !kept.contains(a.id.as_str())) {
                updates.push(Update::Agent(gone.id.clone(), None));
            }
            for agent in agents {
                updates.push(Update::Agent(agent.id.clone(), Some(agent)));
            }
            updates.push(Update::Settings(settings));
        }
        updates
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use pdp::{Action, Scope, Tools};
    use prost::Message;

    fn user(id: &str, groups: &[u32]) -> pb::DirectoryUser {
        pb::DirectoryUser {
            group_indexes: groups.to_vec(),
            ..wire::user(&User {
                id: id.into(),
                user_name: format!("{id}@example.com"),
                emails: vec![format!("{id}@example.com")],
                active: true,
                ..User::default()
            })
        }
    }

    /// A snapshot at revision 3 (two users, one in the one group, one policy), then a change
    /// to revision 4 (a user added to the group, one removed), then a heartbeat.
    fn stream() -> Vec<pb::WatchEvent> {
        use Event::{Begin, Change, Chunk, End, Heartbeat};
        let policy = wire::policy(&Policy {
            id: "p1".into(),
            connector: "github".into(),
            tools: Tools::All,
            scope: Scope {
                all_users: false,
                users: Vec::new(),
                groups: vec!["g1".into()],
            },
            action: Action::Allow,
            ..Policy::default()
        });
        let events = [
            Begin(pb::SnapshotBegin {
                format: FORMAT,
                store_id: "store-1".into(),
                revision: 3,
                users: 2,
                groups: 1,
                policies: 1,
                memberships: 1,
                registry: None,
            }),
            Chunk(pb::SnapshotChunk {
                group_ids: vec!["g1".into()],
                users: vec![user("u1", &[0]), user("u2", &[])],
                policies: vec![policy],
            }),
            End(pb::SnapshotEnd { revision: 3 }),
            Change(pb::DirectoryChange {
                from_revision: 3,
                revision: 4,
                users: vec![pb::DirectoryUser {
                    group_ids: vec!["g1".into()],
                    ..user("u3", &[])
                }],
                removed_users: vec!["u2".into()],
                ..pb::DirectoryChange::default()
            }),
            Heartbeat(pb::Heartbeat { revision: 4 }),
        ];
        events
            .into_iter()
            .map(|event| pb::WatchEvent { event: Some(event) })
            .collect()
    }

    #[test]
    fn a_stream_decodes_into_the_snapshot_and_changes_it_carries() {
        let mut decoder = Decoder::default();
        let mut received = Received::default();
        let mut decoded = Vec::new();
        for message in stream() {
            let size = message.encoded_len() as u64;
            decoded.push(
                decoder
                    .event(message.event.unwrap(), size, &mut received)
                    .unwrap(),
            );
        }
        let [
            _,
            _,
            Decoded::Full {
                model, store_id, ..
            },
            Decoded::Change(delta),
            Decoded::Heartbeat(4),
        ] = &decoded[..]
        else {
            panic!("not a snapshot, a change and a heartbeat");
        };
        assert_eq!((store_id.as_str(), model.revision), ("store-1", 3));
        assert_eq!((model.users.len(), model.memberships.len()), (2, 1));
        assert_eq!((delta.from, delta.revision), (3, 4));
        assert_eq!(
            (received.store_id.as_str(), received.revision),
            ("store-1", 4)
        );
        let mut view = View::from_model(model.clone());
        let updates = Delta {
            users: delta.users.clone(),
            removed_users: delta.removed_users.clone(),
            ..Delta::default()
        }
        .updates(&view);
        view.apply(4, updates);
        assert!(view.user("u3").is_some() && view.user("u2").is_none());

        // The fuzz target's seed is this stream (`PORTCULLIS_FUZZ_SEEDS=dir` writes it).
        if let Some(dir) = std::env::var_os("PORTCULLIS_FUZZ_SEEDS") {
            let mut bytes = Vec::new();
            for message in stream() {
                message.encode_length_delimited(&mut bytes).unwrap();
            }
            std::fs::write(std::path::Path::new(&dir).join("stream"), bytes).unwrap();
        }
    }

    #[test]
    fn a_stream_out_of_order_ends_the_connection() {
        let events = stream();
        let mut decoder = Decoder::default();
        let mut received = Received::default();
        // A change before any snapshot; a chunk outside one; a snapshot that is not whole.
        let change = events[3].event.clone().unwrap();
        assert!(decoder.event(change, 1, &mut received).is_err());
        let chunk = events[1].event.clone().unwrap();
        assert!(decoder.event(chunk, 1, &mut received).is_err());
        let begin = events[0].event.clone().unwrap();
        decoder.event(begin, 1, &mut received).unwrap();
        let end = events[2].event.clone().unwrap();
        assert!(decoder.event(end, 1, &mut received).is_err());
        assert_eq!(received.revision, 0);
    }
}
