//! What is on disk must be whole: counts, records, formats, damaged files, lost tails.

use crate::support::*;
use pdp::Model;
use std::io::Write;
use store::{Error, Store};
use tempfile::TempDir;

#[test]
fn load_refuses_a_directory_whose_counts_do_not_match() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    drop(store);

    raw_insert(
        dir.path(),
        b"u/stray",
        &serde_json::to_vec(&user("stray")).unwrap(),
    );
    let store = Store::open(dir.path()).unwrap();
    let error = store.load().unwrap_err();
    assert!(matches!(error, Error::Corrupt(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "the store is corrupt: `meta/counts` at revision 1 records 1 users, 0 groups, \
         0 memberships, 0 policies and 0 agents, but the store holds 2, 0, 0, 0 and 0"
    );
}

#[test]
fn load_refuses_records_that_do_not_decode_or_sit_under_another_id() {
    let cases: [(&[u8], &[u8], &str); 3] = [
        (
            b"u/alice",
            b"{not json",
            "cannot decode the user record `alice`",
        ),
        (
            b"u/alice",
            br#"{"id":"bob"}"#,
            "the user record under `alice` has id `bob`",
        ),
        (
            b"m/g\0alice",
            b"\x07",
            "cannot decode the membership of user `alice` in group `g`",
        ),
    ];
    for (key, value, expected) in cases {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_user(&user("alice")).unwrap();
        store
            .put_group(&group("g"), Some(&[member("g", "alice")]))
            .unwrap();
        drop(store);
        raw_insert(dir.path(), key, value);
        let error = Store::open(dir.path()).unwrap().load().unwrap_err();
        assert!(matches!(error, Error::Corrupt(_)), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
    }
}

/// Damages sled's `db` file at several places: opening and loading must fail (sled panics or
/// errors, or silently recovers an older state that the acknowledged revision exposes) or
/// return every acknowledged record, never a partial directory and never a panic.
#[test]
fn a_damaged_data_file_gives_an_error_not_a_partial_directory() {
    let pristine = TempDir::new().unwrap();
    let (revision, users) = {
        let store = Store::open(pristine.path()).unwrap();
        for batch in 0..4 {
            let users = (0..500)
                .map(|i| user(&format!("imported-{batch}-{i}")))
                .collect();
            store
                .import(&Model {
                    users,
                    ..Model::default()
                })
                .unwrap();
        }
        for i in 0..200 {
            store.put_user(&user(&format!("single-{i}"))).unwrap();
        }
        (store.revision(), 2200)
    };
    let len = std::fs::metadata(pristine.path().join("db")).unwrap().len();
    let mut errors = 0;
    for twentieth in 1..20 {
        {
            let byte = if twentieth % 2 == 0 { 0x00 } else { 0xff };
            let dir = TempDir::new().unwrap();
            copy_dir(pristine.path(), dir.path());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("db"))
                .unwrap();
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(len * twentieth / 20)).unwrap();
            file.write_all(&[byte; 256]).unwrap();
            drop(file);
            match Store::open(dir.path()).and_then(|store| store.load()) {
                Ok(model) => {
                    assert_eq!(model.revision, revision, "at {twentieth}/20, {byte:#x}");
                    assert_eq!(model.users.len(), users, "at {twentieth}/20, {byte:#x}");
                }
                Err(error) => {
                    assert!(
                        matches!(error, Error::Corrupt(_)),
                        "at {twentieth}/20, {byte:#x}: {error}"
                    );
                    errors += 1;
                }
            }
        }
    }
    // Much of the file is space sled no longer reads (its log keeps superseded pages until it
    // compacts), so only some places hold live data; those must all have been reported.
    eprintln!("{errors} of 19 damaged files were reported; the others lost nothing");
    assert!(
        errors >= 2,
        "only {errors} of 19 damaged files were reported"
    );
}

#[test]
fn open_refuses_a_store_behind_its_acknowledged_revision() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.put_user(&user("alice")).unwrap();
    let saved = TempDir::new().unwrap();
    drop(store);
    copy_dir(dir.path(), saved.path());
    Store::open(dir.path())
        .unwrap()
        .put_user(&user("bob"))
        .unwrap();

    // Put back the data as it was at revision 1, keeping the acknowledgment of revision 2: what
    // sled does when it drops the damaged tail of its log.
    std::fs::copy(saved.path().join("db"), dir.path().join("db")).unwrap();
    let error = Store::open(dir.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("is at revision 1, but revision 2 was acknowledged"),
        "{error}"
    );
}

#[test]
fn open_refuses_other_formats() {
    let dir = TempDir::new().unwrap();
    drop(Store::open(dir.path()).unwrap());
    raw_insert(dir.path(), b"meta/format", &2u32.to_be_bytes());
    let error = Store::open(dir.path()).unwrap_err();
    assert!(matches!(error, Error::Format { .. }), "{error}");
    assert!(
        error
            .to_string()
            .ends_with("holds store format 2, this build reads format 1"),
        "{error}"
    );

    let other = TempDir::new().unwrap();
    raw_insert(other.path(), b"something", b"else");
    assert!(matches!(
        Store::open(other.path()),
        Err(Error::Format { .. })
    ));
}

#[test]
fn open_reports_a_path_it_cannot_use() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let error = Store::open(file.join("store")).unwrap_err();
    assert!(matches!(error, Error::Open { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot open the store in `{}", file.display()))
    );
}
