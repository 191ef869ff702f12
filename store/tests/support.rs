//! Builders for records, and the child-process harness.
//!
//! Tests that need a second process re-run this binary with `CHILD_ROLE` set, which makes
//! [`child`] (and only it) do the child's part.

use pdp::{
    Action, Condition, Group, ManagedBy, Membership, MembershipSource, Mfa, Model, Operator,
    Policy, Role, Scope, Timestamp, Tools, User,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use store::{Error, Store};

// The waits every suite shares.
pub use test_support::{PATIENCE, wait_for};

pub const CHILD_ROLE: &str = "PORTCULLIS_STORE_TEST_CHILD";
pub const CHILD_DIR: &str = "PORTCULLIS_STORE_TEST_DIR";

pub fn user(id: &str) -> User {
    User {
        id: id.into(),
        external_id: Some(format!("ext-{id}")),
        user_name: format!("{id}@example.com"),
        emails: vec![format!("{id}@example.com"), format!("{id}@alt.example.com")],
        display_name: format!("User {id}"),
        given_name: Some("Given".into()),
        family_name: None,
        avatar_url: Some("https://example.com/a.png".into()),
        active: true,
        lock: None,
        mfa: Mfa::Enabled,
        manager: None,
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_000_001),
    }
}

pub fn group(id: &str) -> Group {
    Group {
        id: id.into(),
        external_id: None,
        display_name: format!("Group {id}"),
        description: "a group".into(),
        roles: vec![Role::ReadOnly],
        managed_by: ManagedBy::External,
        created_at: Timestamp(1),
        updated_at: Timestamp(2),
    }
}

pub fn member(group_id: &str, user_id: &str) -> Membership {
    Membership {
        group_id: group_id.into(),
        user_id: user_id.into(),
        joined_at: Timestamp(42),
        source: MembershipSource::Idp,
    }
}

pub fn agent(id: &str, aliases: &[&str]) -> pdp::Agent {
    pdp::Agent {
        id: id.into(),
        display_name: format!("Agent {id}"),
        vendor: "Example".into(),
        aliases: aliases.iter().map(|&a| a.to_owned()).collect(),
        created_at: Timestamp(1),
        updated_at: Timestamp(1),
        ..pdp::Agent::default()
    }
}

pub fn policy(id: &str) -> Policy {
    Policy {
        id: id.into(),
        name: format!("policy {id}"),
        connector: "github".into(),
        tools: Tools::Only(vec!["create_issue".into()]),
        scope: Scope {
            all_users: false,
            users: vec!["alice".into()],
            groups: vec!["eng".into(), "nobody-yet".into()],
        },
        action: Action::RequireApproval,
        approval_flow_id: Some("flow".into()),
        conditions: vec![Condition {
            attribute: "repo".into(),
            operator: Operator::NotIn,
            values: vec!["secret".into()],
        }],
        ..Policy::default()
    }
}

/// A model sorted the way `load` returns it, to compare with `assert_eq!`.
/// Users alice and bob; group eng with both, group ops with alice.
pub fn eng_and_ops(store: &Store) {
    for id in ["alice", "bob"] {
        store.put_user(&user(id)).unwrap();
    }
    store
        .put_group(
            &group("eng"),
            Some(&[member("eng", "alice"), member("eng", "bob")]),
        )
        .unwrap();
    store
        .put_group(&group("ops"), Some(&[member("ops", "alice")]))
        .unwrap();
}

pub fn sorted(mut model: Model) -> Model {
    model.users.sort_by(|a, b| a.id.cmp(&b.id));
    model.groups.sort_by(|a, b| a.id.cmp(&b.id));
    model
        .memberships
        .sort_by(|a, b| (&a.group_id, &a.user_id).cmp(&(&b.group_id, &b.user_id)));
    model.policies.sort_by(|a, b| a.id.cmp(&b.id));
    model
}

pub fn user_ids(memberships: &[Membership]) -> Vec<&str> {
    memberships.iter().map(|m| m.user_id.as_str()).collect()
}

pub fn group_ids(memberships: &[Membership]) -> Vec<&str> {
    memberships.iter().map(|m| m.group_id.as_str()).collect()
}

/// Runs this test binary as a child doing `role` on `dir`; only [`child`] runs there.
pub fn spawn_child(role: &str, dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "support::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The child's part of the multi-process tests; does nothing in a normal run.
#[test]
pub fn child() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let dir = std::env::var(CHILD_DIR).unwrap();
    match role.as_str() {
        "open" => match Store::open(&dir) {
            Ok(_) => println!("result: opened"),
            Err(Error::Locked { .. }) => println!("result: locked"),
            Err(other) => println!("result: other: {other}"),
        },
        "write-forever" => {
            let store = Store::open(&dir).unwrap();
            std::thread::scope(|s| {
                for t in 0..4 {
                    let store = store.clone();
                    s.spawn(move || {
                        for i in 0.. {
                            let id = format!("t{t}-{i}");
                            let revision = store.put_user(&user(&id)).unwrap();
                            // One write per line, so the parent never sees half an ack.
                            let line = format!("ack {revision} {id}\n");
                            std::io::stdout().lock().write_all(line.as_bytes()).unwrap();
                        }
                    });
                }
            });
        }
        "import-forever" => {
            let store = Store::open(&dir).unwrap();
            for round in 0.. {
                let revision = store
                    .import(&big_import(&format!("round{round}"), 3000))
                    .unwrap()
                    .revision;
                println!("ack {revision} round{round}");
            }
        }
        other => panic!("unknown child role `{other}`"),
    }
}

/// Writes straight into the store's sled tree, as a bug or a stray tool might.
pub fn raw_insert(dir: &Path, key: &[u8], value: &[u8]) {
    let db = sled::open(dir).unwrap();
    db.insert(key, value).unwrap();
    db.flush().unwrap();
    close_raw(db, dir);
}

/// Deletes a key straight from a closed store's sled tree.
pub fn raw_remove(dir: &Path, key: &[u8]) {
    let db = sled::open(dir).unwrap();
    db.remove(key).unwrap();
    db.flush().unwrap();
    close_raw(db, dir);
}

/// The keys in a closed store's sled tree under `prefix`.
pub fn raw_keys(dir: &Path, prefix: &[u8]) -> Vec<Vec<u8>> {
    let db = sled::open(dir).unwrap();
    let keys = db
        .scan_prefix(prefix)
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect();
    close_raw(db, dir);
    keys
}

/// Drops a raw sled handle and waits until sled's background threads release the file lock, as
/// `Store` does on drop; otherwise the next `Store::open` may find the directory `Locked`.
fn close_raw(db: sled::Db, dir: &Path) {
    drop(db);
    let data = dir.join("db");
    for _ in 0..400 {
        match std::fs::File::open(&data).map(|file| file.try_lock()) {
            Ok(Err(std::fs::TryLockError::WouldBlock)) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            _ => return,
        }
    }
    panic!("sled did not release `{}`", data.display());
}

/// `n` users named `<prefix>-00000`… and group `<prefix>` holding the first tenth of them: far
/// more writes than fit in one batch, so the store applies it in chunks.
pub fn big_import(prefix: &str, n: usize) -> Model {
    let users: Vec<User> = (0..n).map(|i| user(&format!("{prefix}-{i:05}"))).collect();
    let memberships = users[..n / 10]
        .iter()
        .map(|u| member(prefix, &u.id))
        .collect();
    Model {
        agents: Vec::new(),
        settings: Default::default(),
        revision: 0,
        users,
        groups: vec![group(prefix)],
        memberships,
        policies: Vec::new(),
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Peak resident memory of this process, from `/proc` (Linux only).
pub fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Calls `write` with 0, 1, 2… until `stop` is set: a writer thread's loop.
pub fn until_stopped(stop: &AtomicBool, mut write: impl FnMut(usize)) {
    for i in 0usize.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        write(i);
    }
}

/// Waits, for at most `within`, until `map` (filled by writer threads) holds `n` entries.
pub fn wait_for_entries<K, V>(what: &str, within: Duration, map: &Mutex<BTreeMap<K, V>>, n: usize) {
    wait_for(what, within, || match map.lock().unwrap().len() {
        len if len >= n => Ok(()),
        len => Err(format!("{len} so far")),
    });
}

/// Sets the flag when dropped: stops a helper thread however the test's own part ends (a panic
/// included), so a scope joining it cannot hang.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A child's stdout line by line, each line awaited for at most a deadline; the child is killed
/// when this is dropped (a failing test included), so none outlives the test.
pub struct ChildLines {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<std::io::Result<String>>,
}

impl ChildLines {
    pub fn new(mut child: std::process::Child) -> ChildLines {
        use std::io::BufRead;
        let stdout = child
            .stdout
            .take()
            .expect("a child spawned with piped stdout");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        ChildLines { child, lines }
    }

    /// The next line, or `None` once the child closed its stdout; panics after `within` without
    /// one (a child that hangs fails the test instead of hanging it).
    pub fn next(&mut self, within: Duration) -> Option<String> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.lines.recv_timeout(within) {
            Ok(line) => Some(line.unwrap()),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no line from the child in {within:?}"),
        }
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildLines {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The keys and values in a closed store's sled tree under `prefix`.
pub fn raw_records(dir: &Path, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = sled::open(dir).unwrap();
    let records = db
        .scan_prefix(prefix)
        .map(|item| {
            let (key, value) = item.unwrap();
            (key.to_vec(), value.to_vec())
        })
        .collect();
    close_raw(db, dir);
    records
}
