//! README.md's tour, run as written: every ```sh block between `<!-- tour:start -->` and
//! `<!-- tour:end -->` is one step, run by `sh` in a scratch directory with the binary on `PATH`;
//! its stdout must be the ```text block that follows it (a step without one must print nothing).
//! Editing a command without its answer, or the binary's answers without the README, fails here.
//!
//! What a person does by hand the test does for them, and only that: `portcullis serve` ("in
//! another terminal") runs in the background on ephemeral ports, later steps find it through
//! `PORTCULLIS_SERVER`, and an `export NAME=VALUE` step keeps `NAME` for the steps after it.
//! Times and decision ids, which differ from run to run, are masked on both sides.

use crate::support::Server;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const START: &str = "<!-- tour:start -->";
const END: &str = "<!-- tour:end -->";
/// Each step's deadline: the slowest, replaying 10,000 requests on a debug build, takes seconds.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// One ```sh block and the ```text block after it, if any.
#[derive(Debug)]
struct Step {
    /// The README line of the block, for messages.
    line: usize,
    script: String,
    expected: Option<String>,
}

/// The tour's steps, in order.
fn steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find(START)
        .expect("README.md has no tour:start marker");
    let end = readme.find(END).expect("README.md has no tour:end marker");
    assert!(start < end, "tour:end comes before tour:start");
    let first_line = readme[..start].lines().count();
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = readme[start..end].lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(lang) = line.trim().strip_prefix("```") else {
            continue;
        };
        let lang = lang.trim().to_owned();
        let body: Vec<&str> = lines
            .by_ref()
            .map(|(_, l)| l)
            .take_while(|l| l.trim() != "```")
            .collect();
        let body = body.join("\n") + "\n";
        match lang.as_str() {
            "sh" => steps.push(Step {
                line: first_line + n + 1,
                script: body,
                expected: None,
            }),
            "text" => {
                let step = steps
                    .last_mut()
                    .filter(|s| s.expected.is_none())
                    .unwrap_or_else(|| {
                        panic!(
                            "README.md:{}: a text block follows no sh block",
                            first_line + n + 1
                        )
                    });
                step.expected = Some(body);
            }
            other => panic!(
                "README.md:{}: the tour holds sh and text blocks only, not `{other}`",
                first_line + n + 1
            ),
        }
    }
    steps
}

/// Masks what differs between runs: durations (`0.2s`, `1.52s;`), rates (`(6579/s):`) and
/// decision ids (32 hex digits); drops trailing spaces.
fn normalized(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<String> = line.split(' ').map(mask).collect();
        out.push_str(words.join(" ").trim_end());
        out.push('\n');
    }
    out
}

fn mask(word: &str) -> String {
    let core = word.trim_start_matches('(');
    let core = core.trim_end_matches([';', ':', ',', ')']);
    let (Some(at), true) = (word.find(core), !core.is_empty()) else {
        return word.to_owned();
    };
    let masked = if core.len() == 32 && core.bytes().all(|b| b.is_ascii_hexdigit()) {
        "<id>"
    } else if core
        .strip_suffix("/s")
        .is_some_and(|n| n.parse::<f64>().is_ok())
    {
        "<n>/s"
    } else if core
        .strip_suffix('s')
        .is_some_and(|n| n.contains('.') && n.parse::<f64>().is_ok())
    {
        "<t>s"
    } else {
        return word.to_owned();
    };
    format!("{}{masked}{}", &word[..at], &word[at + core.len()..])
}

/// The environment every step starts from: nothing of the test runner's `PORTCULLIS_*` or
/// `RUST_LOG`, the binary first on `PATH`, a `HOME` of its own (no client profile of the
/// machine's).
fn base_command(program: &str, dir: &Path, bin_dir: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTCULLIS_") || key == "RUST_LOG" || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let path = std::env::var("PATH").unwrap_or_default();
    command
        .current_dir(dir)
        .env("PATH", format!("{}:{path}", bin_dir.display()))
        .env("HOME", dir);
    command
}

/// Runs `script` with `sh -e`, within [`STEP_DEADLINE`]: (success, stdout, stderr).
fn run_step(
    script: &str,
    dir: &Path,
    bin_dir: &Path,
    env: &BTreeMap<String, String>,
) -> (bool, String, String) {
    let mut command = base_command("sh", dir, bin_dir);
    command
        .arg("-ec")
        .arg(script)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(STEP_DEADLINE) {
        Ok(output) => {
            let output = output.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`{script}` took more than {STEP_DEADLINE:?}");
        }
    }
}

/// The words of a one-line `portcullis serve …` command (no quoting in it), after `portcullis`.
fn serve_args(script: &str) -> Option<Vec<String>> {
    let commands: Vec<&str> = script
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect();
    let [command] = commands.as_slice() else {
        return None;
    };
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    (words.first().map(String::as_str) == Some("portcullis")
        && words.get(1).map(String::as_str) == Some("serve"))
    .then(|| words[1..].to_vec())
}

/// `export NAME=VALUE` on one line: the name and the value as written.
fn export(script: &str) -> Option<(String, String)> {
    let commands: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let [command] = commands.as_slice() else {
        return None;
    };
    let (name, value) = command.strip_prefix("export ")?.split_once('=')?;
    Some((name.trim().to_owned(), value.to_owned()))
}

#[test]
fn the_readme_tour_answers_as_shown() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let steps = steps(&readme);
    // The tour shows each decision, the reasons it names, and the lock.
    let shown: String = steps.iter().filter_map(|s| s.expected.clone()).collect();
    for answer in [
        "ALLOW  reason POLICY",
        "STEP_UP  reason POLICY",
        "ALLOW  reason STEP_UP_MET",
        "REQUIRE_APPROVAL  reason POLICY",
        "DENY  reason POLICY",
        "DENY  reason USER_LOCKED",
    ] {
        assert!(shown.contains(answer), "the tour shows no `{answer}`");
    }
    assert!(
        steps.iter().any(|s| serve_args(&s.script).is_some()),
        "the tour starts no server"
    );

    let root = tempfile::tempdir().unwrap();
    let bin_dir = root.path().join("bin");
    let dir = root.path().join("tour");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_portcullis"), bin_dir.join("portcullis"))
        .unwrap();

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut server: Option<Server> = None;
    for step in &steps {
        let at = format!("README.md:{}", step.line);
        if let Some(args) = serve_args(&step.script) {
            assert!(server.is_none(), "{at}: a second server");
            assert!(step.expected.is_none(), "{at}: `serve` prints nothing");
            // In the background, as "in another terminal" says, on ports nobody else uses.
            let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
            args.extend(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"]);
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            // In the tour's directory, with none of the test runner's own settings.
            let mut setup = format!("cd '{}'", dir.display());
            for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PORTCULLIS_")) {
                if !env.iter().any(|(k, _)| *k == key) {
                    setup.push_str(&format!("; unset {key}"));
                }
            }
            let started = Server::spawn_in_shell(&setup, &args, &env);
            server = Some(started);
            continue;
        }
        if let Some(server) = &server {
            env.insert("PORTCULLIS_SERVER".into(), server.addr.clone());
        }
        if let Some((name, value)) = export(&step.script) {
            // The value as the shell expands it, kept for the steps after this one.
            let (ok, stdout, stderr) =
                run_step(&format!("printf '%s' {value}"), &dir, &bin_dir, &env);
            assert!(ok && !stdout.is_empty(), "{at}: `{value}` failed: {stderr}");
            assert!(step.expected.is_none(), "{at}: `export` prints nothing");
            env.insert(name, stdout);
            continue;
        }
        let (ok, stdout, stderr) = run_step(&step.script, &dir, &bin_dir, &env);
        let server_log = server
            .as_ref()
            .map(|s| s.stderr.lock().unwrap().clone())
            .unwrap_or_default();
        assert!(
            ok,
            "{at}: the step failed\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver:\n{server_log}",
            step.script
        );
        let expected = step.expected.as_deref().unwrap_or("");
        assert_eq!(
            normalized(&stdout),
            normalized(expected),
            "{at}: the answer differs from the README's\n{}\nstderr:\n{stderr}",
            step.script
        );
    }
}

#[test]
fn what_differs_between_runs_is_masked_and_nothing_else() {
    assert_eq!(
        normalized("wrote 1 users to `./w` in 0.2s\nimported x in 12.5s; store revision 1\n"),
        "wrote 1 users to `./w` in <t>s\nimported x in <t>s; store revision 1\n"
    );
    assert_eq!(
        normalized("10 requests in 1.52s (6579/s): 10 matched  \n"),
        "10 requests in <t>s (<n>/s): 10 matched\n"
    );
    assert_eq!(
        normalized("DENY  revision 3  decision 0126c7e9deead7390000000000000005\n"),
        "DENY  revision 3  decision <id>\n"
    );
    // Revisions, policy ids, counts and `86400s` (a requirement, not a time taken) stay.
    let kept = "pol-000031 revision 3 max_age 86400s 2796 memberships\n";
    assert_eq!(normalized(kept), kept);
}

#[test]
fn steps_pair_commands_with_their_answers() {
    let readme = format!(
        "intro\n```sh\nnot in the tour\n```\n{START}\n```sh\na\n```\n\n```text\nA\n```\n```sh\nb\n```\n{END}\n"
    );
    let steps = steps(&readme);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].script, "a\n");
    assert_eq!(steps[0].expected.as_deref(), Some("A\n"));
    assert_eq!(steps[0].line, 6);
    assert_eq!(steps[1].expected, None);
    assert_eq!(
        serve_args("portcullis serve --data-dir ./d    # elsewhere\n"),
        Some(vec!["serve".into(), "--data-dir".into(), "./d".into()])
    );
    assert_eq!(serve_args("portcullis check --user u\n"), None);
    assert_eq!(
        export("export T=$(x | tail -n1)\n"),
        Some(("T".into(), "$(x | tail -n1)".into()))
    );
}
