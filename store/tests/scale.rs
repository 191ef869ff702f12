//! Measurements at a million users, run by hand in release (all `#[ignore]`).

use crate::support::*;
use pdp::Model;
use store::Store;
use tempfile::TempDir;

/// A directory the size the store must handle: 1M users, 20k groups, 2.5M memberships, 10k
/// policies (`STORE_SCALE_PERCENT` shrinks it). Run by hand in release: `cargo test --release
/// -p portcullis-store --test tests at_scale -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement at 1M users: run by hand in release"]
fn at_scale_import_and_load() {
    use std::time::Instant;
    let percent: usize = std::env::var("STORE_SCALE_PERCENT").map_or(100, |p| p.parse().unwrap());
    let scaled = |n: usize| n * percent / 100;
    #[allow(non_snake_case)]
    let (USERS, GROUPS, MEMBERSHIPS, POLICIES) = (
        scaled(1_000_000),
        scaled(20_000),
        scaled(2_500_000),
        scaled(10_000),
    );
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut model = Model {
        users: (0..USERS).map(|i| user(&format!("user-{i:07}"))).collect(),
        groups: (0..GROUPS)
            .map(|i| group(&format!("group-{i:05}")))
            .collect(),
        policies: (0..POLICIES)
            .map(|i| {
                let mut p = policy(&format!("policy-{i:05}"));
                p.scope.groups = vec![format!("group-{:05}", i % GROUPS)];
                p
            })
            .collect(),
        ..Model::default()
    };
    let mut pairs = std::collections::HashSet::with_capacity(MEMBERSHIPS);
    while pairs.len() < MEMBERSHIPS {
        pairs.insert((next(GROUPS), next(USERS)));
    }
    model.memberships = pairs
        .into_iter()
        .map(|(g, u)| member(&format!("group-{g:05}"), &format!("user-{u:07}")))
        .collect();
    eprintln!("model built, peak RSS {} MiB", peak_rss_mib());

    let temp = TempDir::new().unwrap();
    // `STORE_SCALE_DIR` keeps the store for `load_existing`.
    let dir =
        std::env::var_os("STORE_SCALE_DIR").map_or_else(|| temp.path().to_owned(), Into::into);
    let store = Store::open(&dir).unwrap();
    let started = Instant::now();
    let summary = store.import(&model).unwrap();
    eprintln!(
        "import: {:?} ({summary:?}), peak RSS {} MiB",
        started.elapsed(),
        peak_rss_mib()
    );
    drop(model);

    let started = Instant::now();
    let loaded = store.load().unwrap();
    eprintln!(
        "load: {:?}, peak RSS {} MiB",
        started.elapsed(),
        peak_rss_mib()
    );
    assert_eq!(loaded.users.len(), USERS);
    assert_eq!(loaded.memberships.len(), MEMBERSHIPS);
    drop(loaded);

    let started = Instant::now();
    let revision = store.put_user(&user("one-more")).unwrap();
    eprintln!("one write after import: {:?}", started.elapsed());
    drop(store);

    let started = Instant::now();
    let store = Store::open(&dir).unwrap();
    eprintln!("reopen: {:?}", started.elapsed());
    let started = Instant::now();
    let loaded = store.load().unwrap();
    eprintln!(
        "load after reopen: {:?}, peak RSS {} MiB",
        started.elapsed(),
        peak_rss_mib()
    );
    assert_eq!(loaded.revision, revision);
    assert_eq!(loaded.users.len(), USERS + 1);
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!("directory size: {} MiB", size / (1024 * 1024));
}

/// Loads the store in `STORE_SCALE_DIR` (left by `at_scale_import_and_load`) with a
/// `STORE_CACHE_MIB` cache. Run by hand in release.
#[test]
#[ignore = "needs STORE_SCALE_DIR from at_scale_import_and_load: run by hand in release"]
fn load_existing() {
    let dir = std::env::var("STORE_SCALE_DIR").unwrap();
    let cache: u64 = std::env::var("STORE_CACHE_MIB").map_or(256, |c| c.parse().unwrap());
    let started = std::time::Instant::now();
    let store =
        Store::open_with(&dir, store::Options::default().cache_capacity(cache << 20)).unwrap();
    eprintln!("open: {:?}", started.elapsed());
    let mut loads = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let model = store.load().unwrap();
        eprintln!(
            "load of {} users, {} memberships: {:?}, peak RSS {} MiB",
            model.users.len(),
            model.memberships.len(),
            started.elapsed(),
            peak_rss_mib()
        );
        loads.push((model.revision, model.users.len(), model.memberships.len()));
    }
    // A measurement of what is there: a store left by `at_scale_import_and_load`, the same both
    // times (the second load is the warm one, not a different directory).
    assert!(
        loads[0].1 > 0,
        "no users in {dir}: not a store left by the import"
    );
    assert_eq!(loads[0], loads[1], "(revision, users, memberships)");
    let started = std::time::Instant::now();
    let view = store.view().unwrap();
    eprintln!(
        "view of {} users (load + index): {:?}, peak RSS {} MiB",
        view.user_count(),
        started.elapsed(),
        peak_rss_mib()
    );
    assert_eq!(view.user_count(), loads[0].1, "the view indexes every user");
}

/// Durable write throughput, one writer against many (group commit). Run by hand in release.
#[test]
#[ignore = "a throughput measurement: run by hand in release"]
fn write_throughput() {
    use std::time::Instant;
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let started = Instant::now();
    const SINGLE: usize = 300;
    for i in 0..SINGLE {
        store.put_user(&user(&format!("single-{i}"))).unwrap();
    }
    let elapsed = started.elapsed();
    eprintln!(
        "1 writer: {SINGLE} writes in {elapsed:?}, {:.0} writes/s",
        SINGLE as f64 / elapsed.as_secs_f64()
    );
    let mut total = SINGLE;
    for threads in [4, 16, 64] {
        let per_thread = 2400 / threads;
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..per_thread {
                        store
                            .put_user(&user(&format!("c{threads}-{t}-{i}")))
                            .unwrap();
                    }
                });
            }
        });
        let elapsed = started.elapsed();
        let writes = threads * per_thread;
        eprintln!(
            "{threads} writers: {writes} writes in {elapsed:?}, {:.0} writes/s",
            writes as f64 / elapsed.as_secs_f64()
        );
        total += writes;
    }
    // The rates are of writes that landed: every one is there, each in its own revision.
    let model = store.load().unwrap();
    assert_eq!(model.users.len(), total);
    assert_eq!(model.revision, total as u64);
}
