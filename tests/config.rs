//! Settings from a config file, the environment and flags, through the binary: which wins,
//! what a bad file says, `config print`, docs/config.md kept equal to `config docs`, JSON logs.

use crate::support::{bin, path, run_ok};
use std::io::{BufRead, BufReader};
use std::process::Stdio;

fn config(root: &std::path::Path, text: &str) -> String {
    let file = root.join("portcullis.toml");
    std::fs::write(&file, text).unwrap();
    path(&file).to_owned()
}

/// `portcullis <args>` with these environment variables (and no other `PORTCULLIS_*`).
fn run_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = bin();
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The line of `config print` for `key`.
fn setting<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{key} ")) || l.starts_with(&format!("# {key} ")))
        .unwrap_or_else(|| panic!("no {key} in {printed}"))
}

#[test]
fn the_environment_wins_over_the_file_which_wins_over_the_default() {
    let root = tempfile::tempdir().unwrap();
    let file = config(
        root.path(),
        "log-format = \"json\"\n\n[serve]\ndata-dir = \"/from/file\"\ngrpc-addr = \"0.0.0.0:7000\"\n\n[sidecar]\nupstream = \"https://cp:50051\"\nserve-stale = true\n",
    );
    let printed = stdout(&run_env(
        &["--config", &file, "config", "print", "serve"],
        &[("PORTCULLIS_GRPC_ADDR", "127.0.0.1:7001")],
    ));
    assert_eq!(
        setting(&printed, "data-dir"),
        "data-dir = \"/from/file\"   # config file"
    );
    assert_eq!(
        setting(&printed, "grpc-addr"),
        "grpc-addr = \"127.0.0.1:7001\"   # environment PORTCULLIS_GRPC_ADDR"
    );
    assert_eq!(
        setting(&printed, "http-addr"),
        "http-addr = \"127.0.0.1:8080\"   # default"
    );
    assert_eq!(
        setting(&printed, "log-format"),
        "log-format = \"json\"   # config file"
    );
    assert_eq!(setting(&printed, "tls-cert"), "# tls-cert is not set");
    // The file is named by the environment just as well; a required setting can come from it.
    let printed = stdout(&run_env(
        &["config", "print", "sidecar"],
        &[("PORTCULLIS_CONFIG", &file)],
    ));
    assert_eq!(
        setting(&printed, "upstream"),
        "upstream = \"https://cp:50051\"   # config file"
    );
    assert_eq!(
        setting(&printed, "serve-stale"),
        "serve-stale = true   # config file"
    );
    // The same as one JSON document: each key's value (a boolean for a switch, null when not
    // set) and where it came from.
    let printed: serde_json::Value = serde_json::from_str(&stdout(&run_env(
        &["config", "print", "sidecar", "--json"],
        &[("PORTCULLIS_CONFIG", &file)],
    )))
    .unwrap();
    use serde_json::json;
    assert_eq!(
        printed["global"]["log-format"],
        json!({"value": "json", "source": "config file"})
    );
    assert_eq!(
        printed["sidecar"]["upstream"],
        json!({"value": "https://cp:50051", "source": "config file"})
    );
    assert_eq!(
        printed["sidecar"]["serve-stale"],
        json!({"value": true, "source": "config file"})
    );
    assert_eq!(
        printed["sidecar"]["upstream-ca-file"],
        json!({"value": null, "source": "not set"}),
        "{printed}"
    );
}

#[test]
fn a_flag_wins_over_the_environment_and_the_file() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // The file and the environment both name ports this test would fail to use (a port in
    // use); the flag's ephemeral port is what serve must listen on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let file = config(
        root.path(),
        &format!(
            "[serve]\ngrpc-addr = \"{taken}\"\nhttp-addr = \"127.0.0.1:0\"\ndata-dir = \"{}\"\n",
            path(&data)
        ),
    );
    let mut child = bin()
        .args(["--config", &file, "serve", "--grpc-addr", "127.0.0.1:0"])
        .env("PORTCULLIS_GRPC_ADDR", &taken)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut serving = None;
    for line in lines.map_while(Result::ok) {
        if line.contains("serving decisions") {
            serving = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let serving = serving.expect("serve did not start");
    assert!(
        serving.contains("grpc_addr=127.0.0.1:") && !serving.contains(&taken),
        "{serving}"
    );
    // The data dir came from the file.
    assert!(data.join("db").exists() || data.read_dir().unwrap().next().is_some());
}

#[test]
fn a_bad_file_is_refused_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[serve]\ngrpc-adr = \"x\"\n",
            "[serve] grpc-adr: no such setting",
        ),
        (
            "[serve]\ngrpc-addr = \"nonsense\"\n",
            "[serve] grpc-addr: invalid value 'nonsense'",
        ),
        (
            "[sidecar]\nmax-staleness = \"soon\"\n",
            "[sidecar] max-staleness: invalid value 'soon'",
        ),
        (
            "[sidecar]\nserve-stale = \"yes\"\n",
            "[sidecar] serve-stale: expected true or false",
        ),
        ("[srve]\n", "[srve]: no such section"),
        (
            "log-format = \"yaml\"\n",
            "log-format: invalid value 'yaml'",
        ),
        (
            "grpc-addr = \"0.0.0.0:1\"\n",
            "grpc-addr: no such top-level setting",
        ),
        ("[serve\n", "TOML parse error"),
    ];
    for (text, error) in cases {
        let file = config(root.path(), text);
        // Checked before anything starts, whichever subcommand runs and whatever overrides it.
        for args in [
            vec![
                "--config",
                file.as_str(),
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
            ],
            vec!["--config", file.as_str(), "config", "docs"],
        ] {
            let output = run_env(&args, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{text} was accepted");
            assert!(stderr.contains(&file), "{stderr}");
            assert!(
                stderr.contains(error),
                "{text}: expected `{error}` in {stderr}"
            );
        }
    }
    let missing = run_env(
        &["--config", "/nonexistent/portcullis.toml", "config", "docs"],
        &[],
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the config file"));
}

#[test]
fn docs_list_every_setting() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/config.md")).unwrap();
    let generated = run_ok(&["config", "docs"]);
    assert!(
        docs.contains(&generated),
        "docs/config.md is out of date: put the output of `portcullis config docs` in it"
    );
    for key in [
        "data-dir",
        "upstream",
        "max-staleness",
        "log-format",
        "sidecar-token-file",
    ] {
        assert!(generated.contains(&format!("| `{key}` |")), "{key}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let root = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "--log-format",
            "json",
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--data-dir",
            path(&root.path().join("data")),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let done = event["message"] == "serving decisions";
        seen.push(event);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let serving = seen.last().unwrap();
    assert_eq!(serving["level"], "INFO");
    assert!(
        serving["grpc_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(serving["timestamp"].is_string());
}

/// The lines a child writes to stderr, gathered by a thread.
struct Lines(std::sync::Arc<std::sync::Mutex<String>>);

impl Lines {
    fn of(stderr: std::process::ChildStderr) -> Lines {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let into = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                into.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Lines(lines)
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Waits (up to a minute) until a line contains every one of `parts`.
    fn wait_for(&self, parts: &[&str]) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let found = self
                .text()
                .lines()
                .find(|line| parts.iter().all(|p| line.contains(p)))
                .map(str::to_owned);
            if let Some(line) = found {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {parts:?} in:\n{}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn sighup_reloads_the_log_filter_and_a_bad_file_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let settings = |top: &str, serve: &str| {
        format!(
            "{top}\n[serve]\ngrpc-addr = \"127.0.0.1:0\"\nhttp-addr = \"127.0.0.1:0\"\n\
             data-dir = \"{}\"\n{serve}\n",
            path(&data)
        )
    };
    let file = config(root.path(), &settings("log-filter = \"info\"", ""));
    let mut command = bin();
    command.env_remove("RUST_LOG");
    let mut child = KillOnDrop(
        command
            .args(["--config", &file, "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Lines::of(child.0.stderr.take().unwrap());
    log.wait_for(&["serving decisions"]);
    let hangup = || {
        let pid = child.0.id().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    let backup = |name: &str| {
        run_ok(&[
            "backup",
            "--data-dir",
            path(&data),
            path(&root.path().join(name)),
        ])
    };

    // At info, a backup the server takes is logged.
    backup("b1");
    log.wait_for(&["backup written", "b1"]);

    // Down to warnings, but for the reload's own lines: the next backup is not logged.
    config(
        root.path(),
        &settings("log-filter = \"warn,portcullis::reload=info\"", ""),
    );
    hangup();
    log.wait_for(&["log filter reloaded", "warn,portcullis::reload=info"]);
    backup("b2");
    // An absence: the backup has been answered, and for 300 ms after no line names it.
    let quiet_until = std::time::Instant::now() + std::time::Duration::from_millis(300);
    while std::time::Instant::now() < quiet_until {
        assert!(!log.text().contains("b2"), "{}", log.text());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!log.text().contains("b2"), "{}", log.text());

    // A file that does not check out changes nothing, says which key, and the server serves on.
    config(
        root.path(),
        &settings("", "decision-log-retention = \"soon\""),
    );
    hangup();
    log.wait_for(&["do not check out", "decision-log-retention"]);
    backup("b3");
    assert!(root.path().join("b3").join("backup.json").exists());
    assert!(child.0.try_wait().unwrap().is_none(), "{}", log.text());
}

/// A server that is killed however its test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
