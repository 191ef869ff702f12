//! Day-two CLI commands against a real server: the decision token from a file, groups by name,
//! groups update, allowed tools, who-can.

use crate::support::{Server, generated_and_imported, path, run, run_ok};

#[test]
fn check_and_replay_send_the_decision_token_from_a_file() {
    let root = tempfile::tempdir().unwrap();
    let (workload, data) = generated_and_imported(
        root.path(),
        &["--preset", "small", "--seed", "5", "--requests", "200"],
    );
    let token_file = root.path().join("decision-token");
    std::fs::write(&token_file, "a-long-random-decision-secret\n").unwrap();
    let wrong_file = root.path().join("wrong-token");
    std::fs::write(&wrong_file, "not-the-secret").unwrap();
    let server = Server::start_with(&data, &["--decision-token-file", path(&token_file)]);
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "--server",
            &server.addr,
            "--user",
            "u0000001",
            "--connector",
            "github",
            "--tool",
            "create_issue",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };

    // Without the token, or with the wrong one: refused, saying so.
    for extra in [&[][..], &["--token-file", path(&wrong_file)][..]] {
        let output = check(extra);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.to_lowercase().contains("unauthenticated"),
            "{stderr}"
        );
    }
    // With it: an answer.
    let output = check(&["--token-file", path(&token_file)]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("reason"),
        "{output:?}"
    );
    // A missing token file is named.
    let missing = root.path().join("missing");
    let output = check(&["--token-file", path(&missing)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--token-file") && stderr.contains(path(&missing)),
        "{stderr}"
    );

    // Replay: every answer matches with the token, none comes without it.
    let replay = [
        "workload",
        "replay",
        "--server",
        &server.addr,
        "--dir",
        path(&workload),
    ];
    let out = run_ok(&[&replay[..], &["--token-file", path(&token_file)]].concat());
    assert!(out.contains("200 matched, 0 mismatched"), "{out}");
    let mut batch = replay.to_vec();
    batch.extend(["--batch", "50", "--token-file", path(&token_file)]);
    assert!(run_ok(&batch).contains("200 matched"));
    let output = run(&replay);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("nauthenticated"),
        "{output:?}"
    );
}

#[test]
fn the_sidecar_and_the_server_default_to_different_ports() {
    let grpc_addr = |subcommand: &str| {
        let output = crate::support::bin()
            .args(["config", "print", subcommand])
            .env("PORTCULLIS_UPSTREAM", "http://127.0.0.1:50051")
            .env_remove("PORTCULLIS_GRPC_ADDR")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let printed = String::from_utf8(output.stdout).unwrap();
        printed
            .lines()
            .find(|l| l.starts_with("grpc-addr = "))
            .unwrap_or_else(|| panic!("{printed}"))
            .to_owned()
    };
    assert_eq!(
        grpc_addr("serve"),
        "grpc-addr = \"127.0.0.1:50051\"   # default"
    );
    assert_eq!(
        grpc_addr("sidecar"),
        "grpc-addr = \"127.0.0.1:50061\"   # default"
    );
}
