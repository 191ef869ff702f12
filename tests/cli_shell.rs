//! The CLI in a shell: piped into `head`, completions, man pages, errors said once.

use crate::support::{Server, admin_token, bin, generated_and_imported, path, run};
use std::io::{BufRead, BufReader};
use std::process::{Output, Stdio};

/// The first user id of a generated workload.
fn first_user(workload: &std::path::Path) -> String {
    let users = std::fs::read_to_string(workload.join("users.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(users.lines().next().unwrap()).unwrap();
    first["id"].as_str().unwrap().to_owned()
}

/// Runs the binary with stdout a pipe whose reader goes away after `lines` lines, as
/// `portcullis … | head -n lines` does.
fn piped_into_head(args: &[&str], lines: usize) -> Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    for _ in 0..lines {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no output");
    }
    drop(reader);
    child.wait_with_output().unwrap()
}

fn assert_quiet_success(output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn a_broken_pipe_ends_quietly_with_success() {
    let root = tempfile::tempdir().unwrap();
    let (workload, data) =
        generated_and_imported(root.path(), &["--preset", "small", "--seed", "18"]);
    let token = admin_token(&data, &first_user(&workload));
    let server = Server::start(&data);

    // 500 users as JSON is far more than a pipe holds: the writer meets the closed pipe.
    let admin = [
        "admin",
        "--server",
        &server.addr,
        "--token",
        &token,
        "--json",
        "users",
        "list",
        "--limit",
        "500",
    ];
    assert_quiet_success(&piped_into_head(&admin, 1));
    // The same as a table.
    let table = &admin[..5]
        .iter()
        .chain(&admin[6..])
        .copied()
        .collect::<Vec<_>>();
    assert_quiet_success(&piped_into_head(table, 1));

    // `workload generate | head`: the pipe is closed before it writes its one line.
    let out = root.path().join("again");
    let generate = [
        "workload",
        "generate",
        "--preset",
        "small",
        "--out",
        path(&out),
    ];
    assert_quiet_success(&piped_into_head(&generate, 0));
}

#[test]
fn each_error_is_said_once() {
    // A missing file: the OS's reason once.
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("missing");
    let output = run(&[
        "workload",
        "replay",
        "--dir",
        path(&missing),
        "--server",
        "127.0.0.1:1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("requests.jsonl"), "{stderr}");

    // A refused connection: the address tried, each cause once.
    let output = run(&[
        "admin",
        "--server",
        "127.0.0.1:1",
        "--token",
        "pcl_x",
        "whoami",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("http://127.0.0.1:1"), "{stderr}");
    assert_eq!(stderr.matches("tcp connect error").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}

#[test]
fn completions_are_generated_for_each_shell_and_complete_in_bash() {
    for (shell, marker) in [
        ("bash", "complete -F _portcullis"),
        ("zsh", "#compdef portcullis"),
        ("fish", "complete -c portcullis"),
    ] {
        let script = crate::support::run_ok(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in [
            "admin",
            "workload",
            "completions",
            "allowed-tools",
            "who-can",
        ] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    assert!(!run(&["completions", "tcsh"]).status.success());

    // The bash script, sourced by a real bash, completes `portcullis adm` and `admin gr`.
    let root = tempfile::tempdir().unwrap();
    let script = root.path().join("portcullis.bash");
    std::fs::write(&script, crate::support::run_ok(&["completions", "bash"])).unwrap();
    let complete = |words: &str| {
        let line = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _portcullis portcullis \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            path(&script)
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(complete("portcullis adm").trim(), "admin");
    assert_eq!(complete("portcullis admin gr").trim(), "groups");
}

#[test]
fn man_pages_are_written_for_every_command() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("man/man1");
    let out = crate::support::run_ok(&["man", path(&dir)]);
    let pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        out.contains(&format!("wrote {} man pages", pages.len())),
        "{out}"
    );
    for page in [
        "portcullis.1",
        "portcullis-admin.1",
        "portcullis-admin-users-list.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "{page} missing: {pages:?}");
    }
    let list = std::fs::read_to_string(dir.join("portcullis-admin-users-list.1")).unwrap();
    assert!(list.starts_with(".ie") || list.contains(".TH"), "{list}");
    assert!(list.contains("\\-\\-limit"), "{list}");
}

#[test]
fn a_sidecar_says_once_that_its_control_plane_is_unreachable() {
    // A port nothing listens on: every attempt is refused the same way.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let sidecar = crate::fleet::sidecar(&upstream, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reconnects = crate::fleet::metrics(&sidecar)
            .into_iter()
            .find(|(name, _)| name.starts_with("portcullis_upstream_reconnects"))
            .map_or(0.0, |(_, value)| value);
        if reconnects >= 3.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reconnects");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let stderr = sidecar.stderr.lock().unwrap().clone();
    assert_eq!(
        stderr.matches("following the control plane failed").count(),
        1,
        "{stderr}"
    );
    // With its cause, once.
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}
