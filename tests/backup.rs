//! `portcullis backup` and `portcullis restore` through the binary: a backup taken from a
//! running server (over its control socket) while an identity provider writes over SCIM
//! restores to exactly one acknowledged revision with every write acknowledged before it; a
//! backup of a stopped store; what both refuse.

use crate::scim::{Scim, USER};
use crate::support::{
    PATIENCE, Server, generated_and_imported, path, run, run_json, run_ok, scim_token, wait_for,
};
use serde_json::json;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn writer_name(i: usize) -> String {
    format!("writer{i}@example.com")
}

/// The revision a line of `backup` or `restore` output reports.
fn revision_in(out: &str) -> u64 {
    out.split("revision ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {out:?}"))
}

/// The revision a server answers from.
fn served_revision(server: &Server) -> u64 {
    let out = run_ok(&[
        "check",
        "--server",
        &server.addr,
        "--user",
        "u0000001",
        "--connector",
        "github",
        "--tool",
        "create_issue",
        "--json",
    ]);
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    answer["revision"].as_u64().unwrap()
}

#[test]
fn a_backup_taken_from_a_server_under_writes_restores_a_consistent_revision() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "3"]);
    let token = scim_token(&data, "okta");
    // A socket left by a crashed server: replaced.
    std::fs::write(data.join("portcullis.sock"), "stale").unwrap();
    let start = store::Store::open(&data).unwrap().revision();
    let server = Server::start(&data);
    let socket = std::fs::metadata(data.join("portcullis.sock")).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);

    // The identity provider creates users one after another, each acknowledged before the next.
    let scim = Scim {
        base: server.http.clone(),
        token,
    };
    let acked = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let user = json!({"schemas": [USER], "userName": writer_name(i), "active": true});
                scim.post("/Users", &user).expect(201);
                *acked.lock().unwrap() = i + 1;
            }
        })
    };
    let acked_now = || *acked.lock().unwrap();
    // Waits for `target` acknowledged writes; the writer failing (its thread ends on a refused
    // write) fails the wait at once instead of leaving it to spin.
    let writes_reach = |target: usize| {
        wait_for(
            &format!("{target} acknowledged SCIM writes"),
            PATIENCE,
            || {
                let n = acked_now();
                if n >= target {
                    return Ok(());
                }
                assert!(
                    !writer.is_finished(),
                    "the SCIM writer stopped after {n} writes"
                );
                Err(format!("{n} acknowledged"))
            },
        );
    };
    writes_reach(20);

    let out = root.path().join("backups/under-writes");
    let acked_before = acked_now();
    let backed_up = run_ok(&["backup", "--data-dir", path(&data), path(&out)]);
    // The write in flight when it ended may be in it too.
    let attempted_after = acked_now() + 1;
    assert!(
        backed_up.contains("(taken by the running server)"),
        "{backed_up}"
    );
    let revision = revision_in(&backed_up);
    // The same for scripts: taken by the server too, at a revision no older.
    let second = root.path().join("backups/json");
    let document = run_json(&["backup", "--data-dir", path(&data), path(&second), "--json"]);
    assert_eq!(document["taken_by_server"], true, "{document}");
    // A few SCIM writes during the copy are read again under the lock, not the whole store.
    assert_eq!(document["copied_under_lock"], false, "{document}");
    assert!(
        document["revision"].as_u64().unwrap() >= revision,
        "{document}"
    );
    assert_eq!(document["out"], path(&second), "{document}");

    // Writes go on after it.
    writes_reach(acked_now() + 10);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(server.terminate().success());
    assert!(
        !data.join("portcullis.sock").exists(),
        "the socket is removed on shutdown"
    );

    let restored = root.path().join("restored");
    let out_text = run_ok(&["restore", "--data-dir", path(&restored), path(&out)]);
    assert_eq!(revision_in(&out_text), revision, "{out_text}");

    // Opens and loads (every record, the counts); exactly the first `n` writes, each one
    // revision, so the backup's revision is the one that acknowledged the n-th.
    let copy = store::Store::open(&restored).unwrap();
    let model = copy.load().unwrap();
    assert_eq!(model.revision, revision);
    let written: Vec<usize> = (0..attempted_after + 1)
        .filter(|&i| model.users.iter().any(|u| u.user_name == writer_name(i)))
        .collect();
    let n = written.len();
    assert_eq!(
        written,
        (0..n).collect::<Vec<_>>(),
        "a prefix of the writes"
    );
    assert!(
        n >= acked_before,
        "{n} writes in the backup, {acked_before} were acknowledged before it started"
    );
    assert!(n <= attempted_after, "{n} > {attempted_after}");
    assert_eq!(revision, start + n as u64);
    drop(copy);

    // And serves from that revision.
    let server = Server::start(&restored);
    assert_eq!(served_revision(&server), revision);
}

#[test]
fn a_backup_of_a_stopped_store_restores_it_and_targets_must_be_new_or_empty() {
    let root = tempfile::tempdir().unwrap();
    let (_, data) = generated_and_imported(root.path(), &["--preset", "small", "--seed", "4"]);
    scim_token(&data, "okta");
    let original = store::Store::open(&data).unwrap();
    let (model, revision) = (original.load().unwrap(), original.revision());
    drop(original);

    let out = root.path().join("backup");
    let backed_up = run_ok(&["backup", "--data-dir", path(&data), path(&out)]);
    assert!(!backed_up.contains("running server"), "{backed_up}");
    assert_eq!(revision_in(&backed_up), revision);

    // Not into a directory that holds anything, nor from a data directory that is not there.
    let again = run(&["backup", "--data-dir", path(&data), path(&out)]);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains(&format!("`{}` is not empty", out.display())),
        "{stderr}"
    );
    let missing = root.path().join("no-such-dir");
    let refused = run(&[
        "backup",
        "--data-dir",
        path(&missing),
        path(&root.path().join("b2")),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("there is no data directory"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!missing.exists());

    // Restore refuses a directory that holds a store, and restores into a new one.
    let refused = run(&["restore", "--data-dir", path(&data), path(&out)]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let restored = root.path().join("restored");
    let out_text = run_ok(&["restore", "--data-dir", path(&restored), path(&out)]);
    assert_eq!(revision_in(&out_text), revision, "{out_text}");
    let copy = store::Store::open(&restored).unwrap();
    assert_eq!(sorted(copy.load().unwrap()), sorted(model));
    assert_eq!(copy.connections().unwrap().len(), 1);
    drop(copy);

    // With --json: what each did, as one document (--json wins over --quiet).
    let out = root.path().join("backup-json");
    let backed_up = run_json(&[
        "backup",
        "--data-dir",
        path(&data),
        path(&out),
        "--json",
        "--quiet",
    ]);
    assert_eq!(backed_up["revision"], revision, "{backed_up}");
    assert_eq!(backed_up["taken_by_server"], false, "{backed_up}");
    assert_eq!(backed_up["copied_under_lock"], false, "{backed_up}");
    assert_eq!(backed_up["data_dir"], path(&data), "{backed_up}");
    assert!(backed_up["records"].as_u64().unwrap() > 0, "{backed_up}");
    assert!(backed_up["bytes"].as_u64().unwrap() > 0, "{backed_up}");
    let restored = root.path().join("restored-json");
    let document = run_json(&[
        "restore",
        "--data-dir",
        path(&restored),
        path(&out),
        "--json",
    ]);
    assert_eq!(document["revision"], revision, "{document}");
    assert_eq!(document["records"], backed_up["records"], "{document}");
    let model = store::Store::open(&restored).unwrap().load().unwrap();
    assert_eq!(
        (
            &document["users"],
            &document["groups"],
            &document["policies"]
        ),
        (
            &json!(model.users.len()),
            &json!(model.groups.len()),
            &json!(model.policies.len())
        ),
        "{document}"
    );
    assert!(
        document["store_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(
        document["taken_at"].as_str().unwrap().ends_with('Z'),
        "{document}"
    );
}

/// `load` order can differ between stores; compare sorted.
fn sorted(mut model: pdp::Model) -> pdp::Model {
    model.users.sort_by(|a, b| a.id.cmp(&b.id));
    model.groups.sort_by(|a, b| a.id.cmp(&b.id));
    model
        .memberships
        .sort_by(|a, b| (&a.group_id, &a.user_id).cmp(&(&b.group_id, &b.user_id)));
    model.policies.sort_by(|a, b| a.id.cmp(&b.id));
    model
}
