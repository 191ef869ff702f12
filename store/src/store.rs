//! Opening a store, and every read.

use crate::changelog::{self, CHANGE_LOG_REVISIONS};
use crate::codec::{self, Counts};
use crate::durability::{self, Durability};
use crate::error::engine;
use crate::records::{ApiToken, AuditEvent, ScimConnection, ScimKind};
use crate::undo::{self, InFlight};
use crate::view::{Update, View};
use crate::written::Written;
use crate::{Error, Result, keys, lock};
use pdp::{Agent, Group, Membership, Model, Policy, Settings, User};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// How to open a store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// The most memory sled's page cache may use, in bytes.
    pub cache_capacity: u64,
    /// How many of the latest revisions the change log covers ([`Store::touched_between`]);
    /// 0 keeps no log.
    pub change_log_revisions: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cache_capacity: 256 * 1024 * 1024,
            change_log_revisions: CHANGE_LOG_REVISIONS,
        }
    }
}

impl Options {
    pub fn cache_capacity(mut self, bytes: u64) -> Options {
        self.cache_capacity = bytes;
        self
    }

    /// Keeps the change log of the last `revisions` revisions (default
    /// [`CHANGE_LOG_REVISIONS`]). Opening a store prunes older records, so a smaller window
    /// takes effect at once; a larger one fills up as revisions are committed.
    pub fn change_log_revisions(mut self, revisions: u64) -> Options {
        self.change_log_revisions = revisions;
        self
    }
}

/// A handle on an open store; clones share it. The directory stays locked against other
/// processes until the last clone is dropped.
///
/// Writes are serialized inside the store and return the revision they committed once it is
/// durable. Reads see committed changes only, and never wait for writers except in
/// [`Store::load`] and while a change too large for one batch (a big import) is applied; a read
/// may see a change a moment before the write that made it returns.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: sled::Db,
    /// Declared after `db`, so it is dropped after it (see [`WaitForRelease`]).
    _released: WaitForRelease,
    pub(crate) dir: PathBuf,
    /// See [`Store::id`].
    id: String,
    /// How many revisions the change log keeps ([`Options::change_log_revisions`]).
    pub(crate) change_log_revisions: u64,
    /// Held by each writer from reading the state it validates against until its batch is
    /// applied, and by `load`, so a load never interleaves with a write.
    pub(crate) writer: Mutex<Writer>,
    pub(crate) durability: Durability,
    /// Whether a change spanning several batches is being applied (see [`crate::undo`]).
    pub(crate) in_flight: InFlight,
    /// The in-memory view, once someone asked for it; then kept at the last applied revision
    /// by every commit (under the write lock).
    pub(crate) view: RwLock<Option<Arc<View>>>,
    /// The next audit event's sequence number.
    pub(crate) audit_seq: AtomicU64,
    /// The keys written while an online backup reads without the write lock.
    pub(crate) written: Written,
    /// Orders removals from the journal with a backup's copy of it.
    pub(crate) journal_removals: crate::journal::Removals,
}

/// What writers know of the committed state; equal to `meta/revision` and `meta/counts`.
pub(crate) struct Writer {
    pub(crate) revision: u64,
    pub(crate) counts: Counts,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

/// Waits, when dropped, until sled has released its lock on the directory.
///
/// sled's I/O threads keep its data file (and so its `flock`) open for a moment after the last
/// `Db` handle is dropped; without this, reopening a directory right after closing it in the same
/// process could fail with [`Error::Locked`].
/// It holds the path of sled's data file once sled has opened (and locked) it.
struct WaitForRelease(Option<PathBuf>);

impl Drop for WaitForRelease {
    fn drop(&mut self) {
        let Some(path) = &self.0 else {
            return;
        };
        // At most two seconds: enough for sled's threads to finish their writes.
        for _ in 0..400 {
            match std::fs::File::open(path).map(|file| file.try_lock()) {
                Ok(Err(std::fs::TryLockError::WouldBlock)) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                // Released (the lock is dropped with the file), or nothing to wait for.
                _ => return,
            }
        }
    }
}

/// Reads that scan a prefix retry this often when a write lands meanwhile, then wait for writers.
const SCAN_RETRIES: usize = 8;

impl Store {
    /// Opens the store in `dir`, creating both if missing, with default [`Options`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, Options::default())
    }

    pub fn open_with(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref().to_owned();
        let open_error = |reason: String| Error::Open {
            path: dir.clone(),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| open_error(e.to_string()))?;
        // Declared before `db` so that, on every return, it is dropped after it.
        let mut released = WaitForRelease(None);
        // sled panics on some damaged files instead of returning an error.
        let db = catch_panic("opening the store", || {
            sled::Config::new()
                .path(&dir)
                .cache_capacity(options.cache_capacity)
                .open()
                .map_err(|e| match e {
                    sled::Error::Io(io) if is_lock_error(&io) => {
                        Error::Locked { path: dir.clone() }
                    }
                    e @ sled::Error::Corruption { .. } => engine(e),
                    e => open_error(e.to_string()),
                })
        })?;
        released.0 = Some(dir.join("db"));
        let writer = catch_panic("opening the store", || {
            let writer = init_or_check(&db, &dir)?;
            // Never touches the revision or counts: only a large change's last batch writes them.
            undo::recover(&db)?;
            Ok(writer)
        })?;
        match durability::acknowledged(&dir)? {
            Some(acked) if acked > writer.revision => {
                return Err(Error::Corrupt(format!(
                    "the data in `{}` is at revision {}, but revision {acked} was acknowledged: \
                     the storage engine lost committed changes (a damaged data file?)",
                    dir.display(),
                    writer.revision,
                )));
            }
            None if writer.revision > 0 => {
                return Err(Error::Corrupt(format!(
                    "`{}` is missing from a store at revision {}",
                    dir.join(durability::ACK_FILE).display(),
                    writer.revision,
                )));
            }
            _ => {}
        }
        // Both written before `Durability::open`, whose flush and fsync make them durable.
        let id = catch_panic("opening the store", || {
            let id = store_id(&db, &dir)?;
            changelog::prune(&db, writer.revision, options.change_log_revisions)?;
            Ok(id)
        })?;
        let durability = Durability::open(dir.clone(), &db, writer.revision)?;
        let audit_seq = match db.scan_prefix(keys::AUDIT).next_back() {
            Some(item) => keys::audit_seq(&item.map_err(engine)?.0)? + 1,
            None => 1,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                _released: released,
                dir,
                id,
                change_log_revisions: options.change_log_revisions,
                writer: Mutex::new(writer),
                durability,
                in_flight: InFlight::default(),
                view: RwLock::new(None),
                audit_seq: AtomicU64::new(audit_seq),
                written: Written::default(),
                journal_removals: Default::default(),
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// This store's id: 32 lowercase hex characters, random, set when the store was created (or
    /// first opened by a build that has ids) and never changed. A follower that finds another
    /// id than the one it followed is looking at another store, whose revisions and change log
    /// say nothing about what it holds: it must resync.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The latest durable revision: 0 for a new store, then one more per committed change.
    pub fn revision(&self) -> u64 {
        self.inner.durability.durable()
    }

    /// The whole directory and every policy, consistent at one revision (`Model::revision`),
    /// which is durable when this returns.
    ///
    /// Writers wait while it reads. It fails with [`Error::Corrupt`] rather than return a
    /// partial model: every record must decode, sit under its own id, and the number of each
    /// kind must match `meta/counts`.
    pub fn load(&self) -> Result<Model> {
        let model = {
            let _writer = lock(&self.inner.writer)?;
            catch_panic("loading the store", || self.read_model())?
        };
        self.inner
            .durability
            .sync_through(&self.inner.db, model.revision)?;
        Ok(model)
    }

    /// The in-memory view at the last applied revision (see [`View`]). The first call reads
    /// the whole store, like [`Store::load`]; from then on every commit keeps it current.
    ///
    /// The view may run a moment ahead of [`Store::revision`]: a change is in it once applied,
    /// before it is durable. Call [`Store::sync`] with its revision before acting on it as
    /// acknowledged.
    pub fn view(&self) -> Result<Arc<View>> {
        if let Some(view) = self.current_view()? {
            return Ok(view);
        }
        let _writer = lock(&self.inner.writer)?;
        if let Some(view) = self.current_view()? {
            return Ok(view);
        }
        let model = catch_panic("loading the store", || self.read_model())?;
        let view = catch_panic("indexing the store", || Ok(View::from_model(model)))?;
        let view = Arc::new(view);
        *self.inner.view.write().map_err(|_| Error::Failed)? = Some(Arc::clone(&view));
        Ok(view)
    }

    fn current_view(&self) -> Result<Option<Arc<View>>> {
        Ok(self.inner.view.read().map_err(|_| Error::Failed)?.clone())
    }

    /// Moves the view to `revision`, just applied; the caller holds the write lock. `None`
    /// updates (a change too large to list) reload it.
    pub(crate) fn advance_view(&self, revision: u64, updates: Option<Vec<Update>>) {
        let Ok(mut slot) = self.inner.view.write() else {
            return;
        };
        let Some(current) = slot.as_ref() else {
            return;
        };
        *slot = match updates {
            Some(updates) => {
                let mut next = View::clone(current);
                next.apply(revision, updates);
                Some(Arc::new(next))
            }
            // Dropped if the reload fails: the next `view` call reads the store again.
            None => catch_panic("loading the store", || self.read_model())
                .ok()
                .map(|model| Arc::new(View::from_model(model))),
        };
    }

    /// Returns once `revision` (already applied: from a [`View`] or a write) is durable.
    pub fn sync(&self, revision: u64) -> Result<()> {
        self.inner.durability.sync_through(&self.inner.db, revision)
    }

    pub(crate) fn next_audit_seq(&self) -> u64 {
        self.inner.audit_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends an event that goes with no change (a refused attempt), returning its `seq`.
    /// It is not synced to disk on its own: it survives a crash once a later write is
    /// acknowledged, or sled's periodic flush (every 500 ms) ran, so a flood of refused calls
    /// cannot make the store fsync for each.
    pub fn append_audit(&self, mut event: AuditEvent) -> Result<u64> {
        self.inner.durability.check()?;
        event.seq = self.next_audit_seq();
        event.revision = 0;
        let value = codec::to_json("audit event", &event)?;
        self.inner
            .db
            .insert(keys::audit(event.seq), value)
            .map_err(engine)?;
        Ok(event.seq)
    }

    /// Records that SCIM connection `id` authenticated a request at `at` (bookkeeping, not a
    /// change): written outside any change, so it takes no revision, no change-log entry and no
    /// audit event, and is not synced on its own (like [`Store::append_audit`]). Under the
    /// writer lock, so a rotation or revocation committing at the same time is never undone.
    /// A connection that is gone, or was used later already, is left alone.
    pub fn mark_connection_used(&self, id: &str, at: pdp::Timestamp) -> Result<()> {
        keys::check_id("connection id", id)?;
        self.inner.durability.check()?;
        let key = keys::connection(id);
        let _writer = lock(&self.inner.writer)?;
        let Some(bytes) = self.inner.db.get(&key).map_err(engine)? else {
            return Ok(());
        };
        let mut connection: ScimConnection = codec::from_json("SCIM connection", id, &bytes)?;
        if connection.last_used_at.is_some_and(|last| last >= at) {
            return Ok(());
        }
        connection.last_used_at = Some(at);
        let value = codec::to_json("SCIM connection", &connection)?;
        self.inner.written.note(&key);
        self.inner.db.insert(key, value).map_err(engine)?;
        Ok(())
    }

    pub fn get_token(&self, id: &str) -> Result<Option<ApiToken>> {
        keys::check_id("token id", id)?;
        self.get_record("token", &keys::token(id), id)
    }

    /// Every API token, by id.
    pub fn tokens(&self) -> Result<Vec<ApiToken>> {
        let mut tokens = Vec::new();
        for item in self.inner.db.scan_prefix(keys::TOKEN) {
            let (key, value) = item.map_err(engine)?;
            let id = keys::id_of(keys::TOKEN, &key)?;
            tokens.push(codec::from_json("token", id, &value)?);
        }
        Ok(tokens)
    }

    pub fn get_connection(&self, id: &str) -> Result<Option<ScimConnection>> {
        keys::check_id("connection id", id)?;
        self.get_record("SCIM connection", &keys::connection(id), id)
    }

    /// Every SCIM connection, by id.
    pub fn connections(&self) -> Result<Vec<ScimConnection>> {
        let mut connections = Vec::new();
        for item in self.inner.db.scan_prefix(keys::CONNECTION) {
            let (key, value) = item.map_err(engine)?;
            let id = keys::id_of(keys::CONNECTION, &key)?;
            connections.push(codec::from_json("SCIM connection", id, &value)?);
        }
        Ok(connections)
    }

    /// The SCIM document of a user or group synced over SCIM.
    pub fn get_scim(&self, kind: ScimKind, id: &str) -> Result<Option<serde_json::Value>> {
        keys::check_id("SCIM resource id", id)?;
        self.get_record("SCIM document", &keys::scim(kind, id), id)
    }

    pub fn get_user(&self, id: &str) -> Result<Option<User>> {
        keys::check_id("user id", id)?;
        self.get_record("user", &keys::user(id), id)
    }

    pub fn get_group(&self, id: &str) -> Result<Option<Group>> {
        keys::check_id("group id", id)?;
        self.get_record("group", &keys::group(id), id)
    }

    pub fn get_policy(&self, id: &str) -> Result<Option<Policy>> {
        keys::check_id("policy id", id)?;
        self.get_record("policy", &keys::policy(id), id)
    }

    pub fn get_agent(&self, id: &str) -> Result<Option<Agent>> {
        keys::check_id("agent id", id)?;
        self.get_record("agent", &keys::agent(id), id)
    }

    /// The organisation's settings (the defaults until some are written).
    pub fn settings(&self) -> Result<Settings> {
        read_settings(&self.inner.db)
    }

    /// The members of a group, by user id; [`Error::NotFound`] if there is no such group.
    pub fn group_members(&self, group_id: &str) -> Result<Vec<Membership>> {
        keys::check_id("group id", group_id)?;
        self.consistent(|| {
            if !self.contains(&keys::group(group_id))? {
                return Err(not_found("group", group_id));
            }
            let mut members = Vec::new();
            for item in self.inner.db.scan_prefix(keys::members_of(group_id)) {
                let (key, value) = item.map_err(engine)?;
                let (_, user_id) = keys::ids_of(keys::MEMBER, &key)?;
                members.push(codec::decode_membership(group_id, user_id, &value)?);
            }
            Ok(members)
        })
    }

    /// The groups a user belongs to, by group id; [`Error::NotFound`] if there is no such user.
    pub fn user_groups(&self, user_id: &str) -> Result<Vec<Membership>> {
        keys::check_id("user id", user_id)?;
        self.consistent(|| {
            if !self.contains(&keys::user(user_id))? {
                return Err(not_found("user", user_id));
            }
            let mut groups = Vec::new();
            for item in self.inner.db.scan_prefix(keys::groups_of(user_id)) {
                let (key, _) = item.map_err(engine)?;
                let (_, group_id) = keys::ids_of(keys::REVERSE, &key)?;
                let value = self
                    .inner
                    .db
                    .get(keys::member(group_id, user_id))
                    .map_err(engine)?
                    .ok_or_else(|| {
                        Error::Corrupt(format!(
                            "the reverse index lists group `{group_id}` for user `{user_id}`, \
                             but there is no such membership"
                        ))
                    })?;
                groups.push(codec::decode_membership(group_id, user_id, &value)?);
            }
            Ok(groups)
        })
    }

    pub(crate) fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
        id: &str,
    ) -> Result<Option<T>> {
        match self.get_committed(key)? {
            Some(bytes) => codec::from_json(what, id, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The committed value at `key`. A single `get` never sees half a batch, but it could see
    /// part of a large change, whose chunks are batches of their own: so while one is in flight
    /// (or starts meanwhile), wait for the writer.
    pub(crate) fn get_committed(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        let in_flight = &self.inner.in_flight;
        let epoch = in_flight.epoch();
        if !InFlight::active(epoch) {
            let value = self.inner.db.get(key).map_err(engine)?;
            if in_flight.epoch() == epoch {
                return Ok(value);
            }
        }
        let _writer = lock(&self.inner.writer)?;
        self.inner.db.get(key).map_err(engine)
    }

    /// The sled tree, for reads of records outside the model (an approval request never
    /// spans a chunked change).
    pub(crate) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// Only inside [`Store::consistent`], which makes raw reads see committed state.
    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.db.contains_key(key).map_err(engine)
    }

    fn stored_revision(&self) -> Result<u64> {
        read_u64(&self.inner.db, keys::REVISION)
    }

    /// Runs a multi-key read so that it sees one revision, without blocking writers.
    ///
    /// sled applies a batch atomically for single-key reads (a `get` waits for a batch being
    /// applied) but an iterator can straddle one. Every change rewrites `meta/revision` in its
    /// batch, so equal revisions before and after the read prove no change overlapped it. After
    /// a few unlucky tries it waits for writers instead, as it does at once while a large
    /// change is in flight (its chunks do not bump the revision).
    ///
    /// Holding the write lock is always consistent: writers hold it until their change is
    /// applied whole, large ones until committed or rolled back.
    fn consistent<T>(&self, read: impl Fn() -> Result<T>) -> Result<T> {
        let in_flight = &self.inner.in_flight;
        for _ in 0..SCAN_RETRIES {
            let epoch = in_flight.epoch();
            if InFlight::active(epoch) {
                break;
            }
            let before = self.stored_revision()?;
            // An error may come from a torn view too (a reverse-index entry whose membership a
            // concurrent change removed), so it is only returned once the view is proven whole.
            let result = read();
            if self.stored_revision()? == before && in_flight.epoch() == epoch {
                return result;
            }
        }
        let _writer = lock(&self.inner.writer)?;
        read()
    }

    /// Reads the model; the caller holds the write lock.
    fn read_model(&self) -> Result<Model> {
        let db = &self.inner.db;
        let revision = self.stored_revision()?;
        let counts = read_counts(db)?;
        // Iterating sled dominates, so users (a third of the records, the costliest to decode)
        // are read on a second thread while this one reads the rest.
        let (users, rest) = std::thread::scope(|s| {
            let users =
                s.spawn(|| read_records::<User>(db, keys::USER, "user", counts.users, |u| &u.id));
            let rest = read_records::<Group>(db, keys::GROUP, "group", counts.groups, |g| &g.id)
                .and_then(|groups| Ok((groups, read_memberships(db, counts.memberships)?)))
                .and_then(|(groups, memberships)| {
                    let policies =
                        read_records::<Policy>(db, keys::POLICY, "policy", counts.policies, |p| {
                            &p.id
                        })?;
                    Ok((groups, memberships, policies))
                });
            let users = users.join().unwrap_or_else(|_| {
                Err(Error::Corrupt(
                    "the storage engine panicked while loading users".to_owned(),
                ))
            });
            (users, rest)
        });
        let users = users?;
        let (groups, memberships, policies) = rest?;
        let agents = read_records::<Agent>(db, keys::AGENT, "agent", counts.agents, |a| &a.id)?;
        let settings = read_settings(db)?;

        let read = Counts {
            users: users.len() as u64,
            groups: groups.len() as u64,
            memberships: memberships.len() as u64,
            policies: policies.len() as u64,
            agents: agents.len() as u64,
        };
        if read != counts {
            return Err(Error::Corrupt(format!(
                "`meta/counts` at revision {revision} records {} users, {} groups, {} memberships, \
                 {} policies and {} agents, but the store holds {}, {}, {}, {} and {}",
                counts.users,
                counts.groups,
                counts.memberships,
                counts.policies,
                counts.agents,
                read.users,
                read.groups,
                read.memberships,
                read.policies,
                read.agents,
            )));
        }
        Ok(Model {
            agents,
            settings,
            revision,
            users,
            groups,
            memberships,
            policies,
        })
    }
}

/// Capacity for `count` records; a corrupt count must not make us allocate the world.
fn capacity(count: u64) -> usize {
    usize::try_from(count).unwrap_or(0).min(1 << 24)
}

/// Decodes every JSON record under `prefix`, checking each sits under its own id.
fn read_records<T: serde::de::DeserializeOwned>(
    db: &sled::Db,
    prefix: &[u8],
    what: &'static str,
    count: u64,
    id: impl Fn(&T) -> &str,
) -> Result<Vec<T>> {
    let mut records = Vec::with_capacity(capacity(count));
    for item in db.scan_prefix(prefix) {
        let (key, value) = item.map_err(engine)?;
        let key_id = keys::id_of(prefix, &key)?;
        let record: T = codec::from_json(what, key_id, &value)?;
        if id(&record) != key_id {
            return Err(Error::Corrupt(format!(
                "the {what} record under `{key_id}` has id `{}`",
                id(&record)
            )));
        }
        records.push(record);
    }
    Ok(records)
}

/// The organisation's settings; the defaults if none were ever written.
pub(crate) fn read_settings(db: &sled::Db) -> Result<Settings> {
    match db.get(keys::SETTINGS).map_err(engine)? {
        Some(value) => codec::from_json("settings", "settings", &value),
        None => Ok(Settings::default()),
    }
}

fn read_memberships(db: &sled::Db, count: u64) -> Result<Vec<Membership>> {
    let mut memberships = Vec::with_capacity(capacity(count));
    for item in db.scan_prefix(keys::MEMBER) {
        let (key, value) = item.map_err(engine)?;
        let (group_id, user_id) = keys::ids_of(keys::MEMBER, &key)?;
        memberships.push(codec::decode_membership(group_id, user_id, &value)?);
    }
    Ok(memberships)
}

pub(crate) fn not_found(kind: &'static str, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// Runs `f`, turning a panic inside sled into [`Error::Corrupt`]: a damaged file must give an
/// error, never bring the process down or go unnoticed.
pub(crate) fn catch_panic<T, E: From<Error>>(
    doing: &str,
    f: impl FnOnce() -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::Corrupt(format!(
            "the storage engine panicked while {doing}: {message}"
        ))
        .into())
    })
}

/// sled reports a directory another handle holds as an I/O error wrapping fs2's `WouldBlock`.
fn is_lock_error(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
        || error.to_string().contains("could not acquire lock")
}

fn read_u64(db: &sled::Db, key: &[u8]) -> Result<u64> {
    let bytes = db.get(key).map_err(engine)?.ok_or_else(|| missing(key))?;
    codec::decode_u64(&String::from_utf8_lossy(key), &bytes)
}

fn read_counts(db: &sled::Db) -> Result<Counts> {
    let bytes = db
        .get(keys::COUNTS)
        .map_err(engine)?
        .ok_or_else(|| missing(keys::COUNTS))?;
    Counts::decode(&bytes)
}

fn missing(key: &[u8]) -> Error {
    Error::Corrupt(format!("`{}` is missing", String::from_utf8_lossy(key)))
}

/// Writes the metadata of a new store, or checks an existing one's format; returns its state.
fn init_or_check(db: &sled::Db, dir: &Path) -> Result<Writer> {
    match db.get(keys::FORMAT).map_err(engine)? {
        None if db.is_empty() => {
            let counts = Counts::default();
            let mut batch = sled::Batch::default();
            batch.insert(keys::FORMAT, &codec::encode_format()[..]);
            batch.insert(keys::REVISION, &codec::encode_u64(0)[..]);
            batch.insert(keys::COUNTS, &counts.encode()[..]);
            batch.insert(keys::ID, new_id(dir)?.as_bytes());
            db.apply_batch(batch).map_err(engine)?;
            Ok(Writer {
                revision: 0,
                counts,
            })
        }
        None => Err(Error::Format {
            path: dir.to_owned(),
            found: "none (is this a Portcullis data directory?)".to_owned(),
            expected: codec::FORMAT_VERSION,
        }),
        Some(bytes) => match codec::decode_format(&bytes) {
            Some(codec::FORMAT_VERSION) => Ok(Writer {
                revision: read_u64(db, keys::REVISION)?,
                counts: read_counts(db)?,
            }),
            found => Err(Error::Format {
                path: dir.to_owned(),
                found: found.map_or_else(|| format!("{bytes:?}"), |v| v.to_string()),
                expected: codec::FORMAT_VERSION,
            }),
        },
    }
}

/// The store's id, written first if the store has none: it was created before ids existed.
fn store_id(db: &sled::Db, dir: &Path) -> Result<String> {
    match db.get(keys::ID).map_err(engine)? {
        Some(bytes) => decode_id(&bytes),
        None => {
            let id = new_id(dir)?;
            db.insert(keys::ID, id.as_bytes()).map_err(engine)?;
            Ok(id)
        }
    }
}

/// A fresh id: 128 random bits as 32 lowercase hex characters.
fn new_id(dir: &Path) -> Result<String> {
    let mut bits = [0u8; 16];
    getrandom::fill(&mut bits).map_err(|e| Error::Open {
        path: dir.to_owned(),
        reason: format!("cannot generate the store id: {e}"),
    })?;
    Ok(hex::encode(bits))
}

fn decode_id(bytes: &[u8]) -> Result<String> {
    let is_id =
        |id: &str| id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match std::str::from_utf8(bytes) {
        Ok(id) if is_id(id) => Ok(id.to_owned()),
        _ => Err(Error::Corrupt(
            "`meta/id` is not 32 lowercase hex characters".to_owned(),
        )),
    }
}
