//! User search at memory speed: a flat index of every user's lower-cased email and display
//! name, in email order, beside the fields lists filter and sort by.
//!
//! Walking the view's persistent maps costs a pointer chase per user (100–200 ns), so a search
//! that matches few users, which must visit them all, would take over 100 ms at a million users.
//! The index lays each user's email and name end to end (`email NUL name NUL`) so
//! `memchr::memmem` scans them all at memory bandwidth in one pass; a match counts only when it
//! lies wholly within the email or wholly within the name.
//!
//! It is built from one view (its *base*) and answers exactly for any later view: the users
//! changed since the base (a structural diff of the two views, which skips everything they
//! share, so it costs in proportion to the change) are skipped in the index and taken from the
//! newer view instead. When that set grows past [`REBUILD_AFTER`], a fresh index is built on a
//! background thread while queries go on patching the old one.

use pdp::{User, UserStatus};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::{Arc, Mutex};
use store::View;
use store::view::{Id, UserKey, UserOrder, mfa_rank};

/// Changed users past which a fresh index is built.
pub const REBUILD_AFTER: usize = if cfg!(test) { 16 } else { 4096 };

/// A cheap-to-clone handle on the current index.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    index: Option<Arc<Index>>,
    building: bool,
}

/// What a list asks for. `needle` is lower-cased.
pub(crate) struct Query<'q> {
    pub needle: &'q str,
    pub status: Option<UserStatus>,
    pub order: UserOrder,
    pub descending: bool,
    pub after: Option<&'q UserKey>,
    pub limit: usize,
}

struct Index {
    base: Arc<View>,
    /// Every entry's email and display name, each followed by a NUL.
    text: Vec<u8>,
    /// Entry `i` is `text[starts[i]..starts[i + 1]]`; one more than entries.
    starts: Vec<u32>,
    /// Entry `i`'s name starts at `names[i]`: its email is `text[starts[i]..names[i] - 1]`, its
    /// name `text[names[i]..starts[i + 1] - 1]`.
    names: Vec<u32>,
    ids: Vec<Id>,
    created: Vec<i64>,
    mfa: Vec<u8>,
    status: Vec<UserStatus>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index")
            .field("revision", &self.base.revision())
            .field("users", &self.ids.len())
            .finish()
    }
}

/// A position in an order: what keys compare by.
struct Key<'k> {
    email: &'k [u8],
    created: i64,
    mfa: u8,
    id: &'k str,
}

impl Key<'_> {
    fn cmp(&self, other: &Key<'_>, order: UserOrder) -> Ordering {
        match order {
            UserOrder::Email => (self.email, self.id).cmp(&(other.email, other.id)),
            UserOrder::Created => (self.created, self.id).cmp(&(other.created, other.id)),
            UserOrder::Mfa => {
                (self.mfa, self.email, self.id).cmp(&(other.mfa, other.email, other.id))
            }
        }
    }
}

impl Index {
    fn build(base: Arc<View>) -> Index {
        let mut rows: Vec<(String, String, &Id, &Arc<User>)> = base
            .users_with_ids()
            .map(|(id, u)| {
                (
                    u.email().to_lowercase(),
                    u.display_name.to_lowercase(),
                    id,
                    u,
                )
            })
            .collect();
        rows.sort_unstable_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
        let n = rows.len();
        let mut index = Index {
            text: Vec::with_capacity(rows.iter().map(|r| r.0.len() + r.1.len() + 2).sum()),
            starts: Vec::with_capacity(n + 1),
            names: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            mfa: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            base: Arc::clone(&base),
        };
        for (email, name, id, user) in &rows {
            index.starts.push(index.text.len() as u32);
            index.text.extend_from_slice(email.as_bytes());
            index.text.push(0);
            index.names.push(index.text.len() as u32);
            index.text.extend_from_slice(name.as_bytes());
            index.text.push(0);
            index.ids.push(Arc::clone(id));
            index.created.push(user.created_at.0);
            index.mfa.push(mfa_rank(user.mfa));
            index.status.push(user.status());
        }
        index.starts.push(index.text.len() as u32);
        drop(rows);
        index
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn email(&self, i: usize) -> &[u8] {
        &self.text[self.starts[i] as usize..self.names[i] as usize - 1]
    }

    fn key(&self, i: usize) -> Key<'_> {
        Key {
            email: self.email(i),
            created: self.created[i],
            mfa: self.mfa[i],
            id: &self.ids[i],
        }
    }

    /// The entry whose email or name holds byte `offset` of `text`.
    fn entry_at(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s as usize <= offset) - 1
    }

    /// Entries whose email or name contains `needle`, in email order (reversed if `descending`), from
    /// entry `from` (ascending) or below entry `to` (descending).
    fn matches<'i>(
        &'i self,
        needle: &'i [u8],
        descending: bool,
        range: std::ops::Range<usize>,
    ) -> Box<dyn Iterator<Item = usize> + 'i> {
        if needle.is_empty() {
            return if descending {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
        }
        let start = self.starts[range.start] as usize;
        let end = self.starts[range.end] as usize;
        let hay = &self.text[start..end];
        let within = move |offset: usize| {
            let at = start + offset;
            let i = self.entry_at(at);
            // A match may not run past the end of its email or its name (into the NUL after it).
            let name = self.names[i] as usize;
            let end = if at < name {
                name
            } else {
                self.starts[i + 1] as usize
            };
            (at + needle.len() < end).then_some(i)
        };
        let mut last = usize::MAX;
        let distinct = move |&i: &usize| {
            let new = i != last;
            last = i;
            new
        };
        if descending {
            Box::new(
                memchr::memmem::rfind_iter(hay, needle)
                    .filter_map(within)
                    .filter(distinct),
            )
        } else {
            Box::new(
                memchr::memmem::find_iter(hay, needle)
                    .filter_map(within)
                    .filter(distinct),
            )
        }
    }
}

/// A user changed since the index's base, as the newer view has it.
struct Fresh<'v> {
    email: String,
    name: String,
    user: &'v Arc<User>,
}

impl Fresh<'_> {
    fn key(&self) -> Key<'_> {
        Key {
            email: self.email.as_bytes(),
            created: self.user.created_at.0,
            mfa: mfa_rank(self.user.mfa),
            id: &self.user.id,
        }
    }
}

impl UserSearch {
    /// Builds the first index in the background, so the first search does not wait for it.
    pub fn warm(&self, view: Arc<View>) {
        self.rebuild(view);
    }

    fn rebuild(&self, view: Arc<View>) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            if state.building {
                return;
            }
            state.building = true;
        }
        let search = self.clone();
        let spawned = std::thread::Builder::new()
            .name("user-search-index".into())
            .spawn(move || {
                let index = Arc::new(Index::build(view));
                if let Ok(mut state) = search.state.lock() {
                    let newer = state
                        .index
                        .as_ref()
                        .is_none_or(|old| old.base.revision() <= index.base.revision());
                    if newer {
                        state.index = Some(index);
                    }
                    state.building = false;
                }
            });
        if spawned.is_err()
            && let Ok(mut state) = self.state.lock()
        {
            state.building = false;
        }
    }

    /// The index to answer `view` from: the current one (patched by the caller), or a new one
    /// built now if there is none yet or the current one is ahead of `view`.
    fn index_for(&self, view: &Arc<View>) -> Arc<Index> {
        let current = self.state.lock().ok().and_then(|s| s.index.clone());
        match current {
            Some(index) if index.base.revision() <= view.revision() => index,
            _ => {
                let index = Arc::new(Index::build(Arc::clone(view)));
                if let Ok(mut state) = self.state.lock()
                    && state
                        .index
                        .as_ref()
                        .is_none_or(|old| old.base.revision() < index.base.revision())
                {
                    state.index = Some(Arc::clone(&index));
                }
                index
            }
        }
    }

    /// Up to `query.limit` users of `view` matching the query, in its order, strictly after its
    /// cursor.
    pub(crate) fn find(&self, view: &Arc<View>, query: &Query<'_>) -> Vec<Arc<User>> {
        let index = self.index_for(view);
        let changed = view.users_changed_since(&index.base);
        if changed.len() > REBUILD_AFTER {
            self.rebuild(Arc::clone(view));
        }
        let needle = query.needle.as_bytes();
        let order = query.order;
        let cursor = query.after.map(|k| Key {
            email: k.email.as_bytes(),
            created: k.created.0,
            mfa: k.mfa,
            id: &k.id,
        });
        let past_cursor = |key: &Key<'_>| {
            cursor.as_ref().is_none_or(|c| {
                let ordering = key.cmp(c, order);
                if query.descending {
                    ordering == Ordering::Less
                } else {
                    ordering == Ordering::Greater
                }
            })
        };
        let wanted_status = |s: UserStatus| query.status.is_none_or(|w| w == s);

        // The changed users that match, from the newer view.
        let skip: HashSet<&str> = changed.iter().map(|id| &**id).collect();
        let mut fresh: Vec<Fresh<'_>> = changed
            .iter()
            .filter_map(|id| view.user(id))
            .map(|user| Fresh {
                email: user.email().to_lowercase(),
                name: user.display_name.to_lowercase(),
                user,
            })
            .filter(|f| {
                (memchr::memmem::find(f.email.as_bytes(), needle).is_some()
                    || memchr::memmem::find(f.name.as_bytes(), needle).is_some())
                    && wanted_status(f.user.status())
                    && past_cursor(&f.key())
            })
            .collect();
        fresh.sort_by(|a, b| {
            let ordering = a.key().cmp(&b.key(), order);
            if query.descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
        let keep = |i: &usize| wanted_status(index.status[*i]) && !skip.contains(&*index.ids[*i]);

        let mut picked: Vec<Pick> = Vec::with_capacity(query.limit);
        if order == UserOrder::Email {
            // Email order is the index's own: scan from the cursor and stop at a full page.
            let range = match &cursor {
                None => 0..index.len(),
                Some(c) if query.descending => {
                    0..partition(index.len(), |i| {
                        index.key(i).cmp(c, order) == Ordering::Less
                    })
                }
                Some(c) => {
                    let from = partition(index.len(), |i| {
                        index.key(i).cmp(c, order) != Ordering::Greater
                    });
                    from..index.len()
                }
            };
            let mut entries = index
                .matches(needle, query.descending, range)
                .filter(keep)
                .peekable();
            let mut fresh = fresh.iter().peekable();
            while picked.len() < query.limit {
                let take_fresh = match (entries.peek(), fresh.peek()) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some(&i), Some(f)) => {
                        let ordering = f.key().cmp(&index.key(i), order);
                        if query.descending {
                            ordering == Ordering::Greater
                        } else {
                            ordering == Ordering::Less
                        }
                    }
                };
                if take_fresh {
                    if let Some(f) = fresh.next() {
                        picked.push(Pick::Fresh(Arc::clone(f.user)));
                    }
                } else if let Some(i) = entries.next() {
                    picked.push(Pick::Entry(i));
                }
            }
        } else {
            // Another order: every match competes; keep the first `limit` in a bounded heap.
            let mut heap: BinaryHeap<Ranked<'_>> = BinaryHeap::with_capacity(query.limit + 1);
            let limit = query.limit;
            fn offer<'k>(heap: &mut BinaryHeap<Ranked<'k>>, limit: usize, ranked: Ranked<'k>) {
                heap.push(ranked);
                if heap.len() > limit {
                    heap.pop();
                }
            }
            for i in index.matches(needle, false, 0..index.len()).filter(keep) {
                let key = index.key(i);
                if past_cursor(&key) {
                    offer(
                        &mut heap,
                        limit,
                        Ranked {
                            key,
                            order,
                            descending: query.descending,
                            pick: Pick::Entry(i),
                        },
                    );
                }
            }
            for f in &fresh {
                offer(
                    &mut heap,
                    limit,
                    Ranked {
                        key: f.key(),
                        order,
                        descending: query.descending,
                        pick: Pick::Fresh(Arc::clone(f.user)),
                    },
                );
            }
            let mut ranked = heap.into_vec();
            ranked.sort();
            picked = ranked.into_iter().map(|r| r.pick).collect();
        }
        picked
            .into_iter()
            .filter_map(|pick| match pick {
                Pick::Entry(i) => view.user(&index.ids[i]).cloned(),
                Pick::Fresh(user) => Some(user),
            })
            .collect()
    }
}

/// The first `i` in `0..n` for which `before(i)` is false (`before` must be true, then false).
fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

enum Pick {
    Entry(usize),
    Fresh(Arc<User>),
}

/// A candidate in a bounded heap: ordered so the heap's top is the one to drop first.
struct Ranked<'k> {
    key: Key<'k>,
    order: UserOrder,
    descending: bool,
    pick: Pick,
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let ordering = self.key.cmp(&other.key, self.order);
        if self.descending {
            ordering.reverse()
        } else {
            ordering
        }
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pdp::{Lock, Mfa, Model, Timestamp};

    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    const NAMES: [&str; 6] = ["ann", "Bob", "cara", "ANNA", "dan", "bo"];
    /// Display names: some share words with the emails, some not, one is empty.
    const DISPLAY: [&str; 6] = [
        "Zoe Quinn",
        "Ann Lee",
        "ÉMILE Ångström",
        "",
        "Bob Dale",
        "Quinn",
    ];

    fn user(i: usize, rng: &mut Lcg) -> User {
        User {
            id: format!("u{i:03}"),
            user_name: format!("login{i}"),
            emails: vec![format!("{}.{}@Ex.com", NAMES[rng.below(6)], rng.below(40))],
            display_name: DISPLAY[rng.below(6)].to_owned(),
            created_at: Timestamp(rng.below(8) as i64),
            mfa: [Mfa::Enabled, Mfa::Disabled, Mfa::Unknown][rng.below(3)],
            active: rng.below(5) > 0,
            lock: (rng.below(6) == 0).then(|| Lock {
                at: Timestamp(0),
                by: "t".into(),
                reason: "t".into(),
            }),
            ..User::default()
        }
    }

    /// What `find` must return: the view's own order, filtered.
    fn naive(view: &View, q: &Query<'_>) -> Vec<String> {
        view.users_from(q.order, q.descending, q.after)
            .filter(|u| {
                u.email().to_lowercase().contains(q.needle)
                    || u.display_name.to_lowercase().contains(q.needle)
            })
            .filter(|u| q.status.is_none_or(|s| u.status() == s))
            .take(q.limit)
            .map(|u| u.id.clone())
            .collect()
    }

    #[test]
    fn the_index_answers_like_a_walk_of_the_view_as_writes_land() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::Store::open(dir.path()).unwrap();
        let mut rng = Lcg(3);
        let users: Vec<User> = (0..150).map(|i| user(i, &mut rng)).collect();
        store
            .import(&Model {
                users,
                ..Model::default()
            })
            .unwrap();
        let search = UserSearch::default();
        // Names too ("quinn", "émile", "n l"), and needles that would match only across the
        // separator between an email and its name ("com\0") or between two entries.
        let needles = [
            "", "ann", "bo", "b", "@ex.com", ".1", "zzz", "a.3@", "quinn", "émile", "n l", "om\0z",
            "com\0", "\0", "inn\0",
        ];
        let statuses = [None, Some(UserStatus::Active), Some(UserStatus::Locked)];
        let orders = [UserOrder::Email, UserOrder::Created, UserOrder::Mfa];
        for round in 0..60 {
            // Some writes: changed, new and deleted users, past the rebuild bound now and then.
            let writes = if round % 20 == 19 { 40 } else { rng.below(6) };
            for _ in 0..writes {
                let i = rng.below(170);
                if rng.below(5) == 0 {
                    let _ = store.delete_user(&format!("u{i:03}"));
                } else {
                    store.put_user(&user(i, &mut rng)).unwrap();
                }
            }
            let view = store.view().unwrap();
            for _ in 0..30 {
                let needle = needles[rng.below(needles.len())];
                let order = orders[rng.below(3)];
                let descending = rng.below(2) == 0;
                let status = statuses[rng.below(3)];
                // A cursor from some user's key, present or since deleted.
                let after = match rng.below(3) {
                    0 => None,
                    _ => Some(UserKey::of(&user(rng.below(170), &mut rng))),
                };
                let query = Query {
                    needle,
                    status,
                    order,
                    descending,
                    after: after.as_ref(),
                    limit: 1 + rng.below(12),
                };
                let found: Vec<String> = search
                    .find(&view, &query)
                    .iter()
                    .map(|u| u.id.clone())
                    .collect();
                assert_eq!(
                    found,
                    naive(&view, &query),
                    "round {round}: `{needle}` {order:?} desc={descending} {status:?} after {after:?}"
                );
            }
        }
    }
}
