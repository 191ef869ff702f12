//! Docs that match the code: every `--flag`, `PORTCULLIS_*` variable, config key and
//! `portcullis_*` metric the docs quote is one the binary has. The flags and variables come from
//! the binary's own `--help` (every command, walked from the top), the config keys from
//! `config docs`, the metrics from `/metrics` of a running server and sidecar.
//!
//! A `portcullis …` command quoted in code (a fenced block or an inline span) is checked
//! precisely: its subcommands must exist and its flags must be that command's. Any other
//! `--flag` in the text must be some command's flag, or another tool's in [`OTHER_TOOLS`].

use crate::support::{Server, path, run_ok};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Flags the docs quote of tools other than portcullis, each with whose it is.
const OTHER_TOOLS: &[(&str, &str)] = &[
    ("--release", "cargo build/run --release"),
    ("--workspace", "cargo test --workspace"),
    ("--type", "kubectl create secret --type"),
    ("--from-file", "kubectl create secret --from-file"),
    ("--from-literal", "kubectl create secret --from-literal"),
    ("--image", "kubectl debug/run --image"),
    ("--replicas", "kubectl scale --replicas"),
    ("--for", "kubectl wait --for"),
    ("--timeout", "kubectl wait --timeout"),
    ("--rm", "kubectl run --rm"),
    ("--restart", "kubectl run --restart"),
    ("--overrides", "kubectl run --overrides"),
];

/// `PORTCULLIS_*` names the docs may quote that are no flag's environment variable.
const OTHER_VARIABLES: &[(&str, &str)] = &[
    (
        "PORTCULLIS_SERVICE_HOST",
        "what a Service named portcullis injects; the manifests turn service links off",
    ),
    (
        "PORTCULLIS_PORT",
        "what a Service named portcullis injects; the manifests turn service links off",
    ),
    (
        "PORTCULLIS_ADDR",
        "the example gateway's own setting in deploy/kubernetes/gateway-with-sidecar.yaml",
    ),
];

/// `portcullis_*` words the docs may quote that are no metric.
const NOT_METRICS: &[(&str, &str)] = &[];

/// One command's `--help`: its subcommands and flags (whether each takes a value).
#[derive(Debug, Default)]
struct Help {
    subcommands: BTreeSet<String>,
    flags: BTreeMap<String, bool>,
    /// A flag's `[env: NAME=]`.
    variables: BTreeMap<String, String>,
    /// A flag's `[default: value]`.
    defaults: BTreeMap<String, String>,
}

/// The whole command line, as `--help` tells it.
#[derive(Debug, Default)]
struct Cli {
    commands: BTreeMap<Vec<String>, Help>,
    variables: BTreeSet<String>,
}

impl Cli {
    /// Walks every command's `--help`, from `portcullis --help` down.
    fn read() -> Cli {
        let mut cli = Cli::default();
        let mut queue: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(command) = queue.pop() {
            let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
            args.push("--help");
            let (help, variables) = parse_help(&run_ok(&args));
            cli.variables.extend(variables);
            for sub in &help.subcommands {
                let mut path = command.clone();
                path.push(sub.clone());
                queue.push(path);
            }
            cli.commands.insert(command, help);
        }
        cli
    }

    fn all_flags(&self) -> BTreeSet<&str> {
        self.commands
            .values()
            .flat_map(|h| h.flags.keys().map(String::as_str))
            .collect()
    }
}

/// A `--help` text's subcommands, flags and `[env: NAME=]` variables.
fn parse_help(text: &str) -> (Help, BTreeSet<String>) {
    let mut help = Help::default();
    let mut variables = BTreeSet::new();
    let mut in_commands = false;
    let mut flag: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            in_commands = line == "Commands:";
            continue;
        }
        if in_commands {
            // `  name   description`; wrapped descriptions are indented further.
            if let Some(rest) = line.strip_prefix("  ").filter(|r| !r.starts_with(' ')) {
                let name = rest.split_whitespace().next().unwrap_or_default();
                if name != "help" && !name.is_empty() {
                    help.subcommands.insert(name.to_owned());
                }
            }
            continue;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            let head = trimmed.split("  ").next().unwrap_or_default();
            for word in head.split([' ', ',']) {
                if let Some(name) = word.strip_prefix("--") {
                    help.flags.insert(format!("--{name}"), head.contains('<'));
                    flag = Some(format!("--{name}"));
                }
            }
        }
        // `[env: …]` and `[default: …]` end the description of the flag last named.
        for part in line.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if let Some(flag) = &flag {
                help.variables.insert(flag.clone(), name.clone());
            }
            variables.insert(name);
        }
        if let (Some(flag), Some(part)) = (&flag, line.split("[default: ").nth(1)) {
            let value = part.split(']').next().unwrap_or_default();
            help.defaults.insert(flag.clone(), value.to_owned());
        }
    }
    (help, variables)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pages operators read: README.md, SECURITY.md, docs/*.md and the READMEs under deploy/
/// (not BENCHMARKS.md, whose flags and `PORTCULLIS_BENCH_*` variables are criterion's and the
/// benches').
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = ["README.md", "SECURITY.md"]
        .iter()
        .map(|p| root().join(p))
        .collect();
    pages.extend(files_under(&root().join("docs")));
    pages.extend(
        files_under(&root().join("deploy"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    pages.retain(|p| p.extension().is_some_and(|e| e == "md"));
    pages
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn shown(page: &Path) -> String {
    page.strip_prefix(root()).unwrap().display().to_string()
}

/// The code a page quotes: each fenced block's lines (a `\` continuation joined to the next
/// line) and each inline span, with the line it starts on.
fn code(text: &str) -> Vec<(usize, String)> {
    let mut code = Vec::new();
    let mut fenced = false;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let (start, mut joined) = pending.take().unwrap_or((n, String::new()));
            match line.trim_end().strip_suffix('\\') {
                Some(head) => {
                    joined.push_str(head);
                    joined.push(' ');
                    pending = Some((start, joined));
                }
                None => {
                    joined.push_str(line);
                    code.push((start, joined));
                }
            }
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 {
                code.push((n, span.to_owned()));
            }
        }
    }
    code
}

/// Words of `text` that start with `prefix` and go on with `allowed` characters, not preceded
/// by a letter, digit, `_` or `-`.
fn words<'a>(text: &'a str, prefix: &str, allowed: fn(char) -> bool) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(prefix) {
        let start = from + at;
        let before = text[..start].chars().next_back();
        let len = text[start + prefix.len()..]
            .find(|c: char| !allowed(c))
            .unwrap_or(text.len() - start - prefix.len());
        from = start + prefix.len();
        let first = text[start + prefix.len()..].chars().next();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || !first.is_some_and(|c| c.is_ascii_alphanumeric() && allowed(c))
        {
            continue;
        }
        found.push(&text[start..start + prefix.len() + len]);
    }
    found
}

fn flag_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// What is wrong with the `portcullis …` commands in `snippet`: unknown subcommands, flags the
/// command does not have.
/// Returns how many commands it read.
fn check_commands(cli: &Cli, snippet: &str, problems: &mut Vec<String>) -> usize {
    let mut read = 0;
    let mut from = 0;
    while let Some(at) = snippet[from..].find("portcullis ") {
        let start = from + at;
        from = start + "portcullis ".len();
        if !starts_command(snippet, start) {
            continue;
        }
        read += 1;
        let mut command: Vec<String> = Vec::new();
        let mut help = &cli.commands[&command];
        let mut words = snippet[from..].split_whitespace();
        while let Some(word) = words.next() {
            if ["|", "||", "&&", ";", ">", "2>", "&"].contains(&word) || word.starts_with('#') {
                break;
            }
            let word = word.trim_end_matches([')', ';', '`', '"', '\'', ',', '.']);
            if let Some(flag) = word.strip_prefix("--") {
                let (name, inline_value) = match flag.split_once('=') {
                    Some((name, _)) => (name, true),
                    None => (flag, false),
                };
                if name.is_empty() || !name.chars().all(flag_char) {
                    break;
                }
                let name = format!("--{name}");
                match help.flags.get(&name) {
                    Some(true) if !inline_value => {
                        words.next();
                    }
                    Some(_) => {}
                    None => {
                        problems.push(format!("`portcullis {}` has no {name}", command.join(" ")))
                    }
                }
                continue;
            }
            if word.starts_with('-') || help.subcommands.is_empty() {
                continue;
            }
            // A placeholder (`…`, `<command>`, `COMMAND`) ends what can be checked.
            if word.is_empty() || !word.chars().all(flag_char) || word == "help" {
                break;
            }
            if !help.subcommands.contains(word) {
                problems.push(format!(
                    "`portcullis {}` has no subcommand `{word}`",
                    command.join(" ")
                ));
                break;
            }
            command.push(word.to_owned());
            help = &cli.commands[&command];
        }
    }
    read
}

/// Whether the `portcullis` at `at` in `snippet` starts a command: the first word of the
/// snippet, of a `$(…)`, or after `|`, `&&`, `;`, `--` (`kubectl exec … -- portcullis`) or
/// `sudo`, as itself or a path to the binary (`./target/release/portcullis`); not a name in
/// another command (`kubectl -n portcullis get pods`), a URL's path or a sentence.
fn starts_command(snippet: &str, at: usize) -> bool {
    let before = &snippet[..at];
    let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let prefix = &before[word_start..];
    if prefix.ends_with("$(") {
        return true;
    }
    let path = prefix.is_empty() || (prefix.ends_with('/') && !prefix.contains(':'));
    let previous = before[..word_start].split_whitespace().next_back();
    path && previous.is_none_or(|w| ["|", "||", "&&", ";", "--", "sudo", "exec"].contains(&w))
}

#[test]
fn the_docs_quote_only_flags_commands_and_variables_the_binary_has() {
    let cli = Cli::read();
    assert!(cli.commands.len() > 50, "{:?}", cli.commands.keys());
    assert!(cli.variables.contains("PORTCULLIS_DATA_DIR"));
    let all_flags = cli.all_flags();
    let others: BTreeMap<&str, &str> = OTHER_TOOLS.iter().copied().collect();
    let other_variables: BTreeMap<&str, &str> = OTHER_VARIABLES.iter().copied().collect();
    let config_keys = config_keys();

    let mut problems = Vec::new();
    let mut commands = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = shown(&page);
        let stem = page.file_stem().unwrap().to_string_lossy().into_owned();
        let command = cli.commands.get(&vec![stem]);
        for (line, snippet) in code(&text) {
            let mut found = Vec::new();
            commands += check_commands(&cli, &snippet, &mut found);
            problems.extend(found.into_iter().map(|p| format!("{name}:{line}: {p}")));
        }
        for (n, line) in text.lines().enumerate() {
            let at = format!("{name}:{}", n + 1);
            let mut found = Vec::new();
            check_pairs(&cli, command, line, &mut found);
            if line.starts_with('|') {
                check_table_row(&cli, command, line, &mut found);
            }
            problems.extend(found.into_iter().map(|p| format!("{at}: {p}")));
            for flag in words(line, "--", flag_char) {
                if !all_flags.contains(flag) && !others.contains_key(flag) {
                    problems.push(format!("{at}: no command has {flag}"));
                }
            }
            for variable in words(line, "PORTCULLIS_", |c| {
                c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
            }) {
                let variable = variable.trim_end_matches('_');
                if !cli.variables.contains(variable) && !other_variables.contains_key(variable) {
                    problems.push(format!("{at}: no setting reads {variable}"));
                }
            }
        }
        profile_files(&name, &text, &mut problems);
        for (line, key) in toml_keys(&text) {
            if !config_keys.contains(&key) {
                problems.push(format!("{name}:{line}: no config key `{key}`"));
            }
        }
    }
    // The deploy files set variables too (systemd environment files, manifests).
    for file in files_under(&root().join("deploy")) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for variable in words(&text, "PORTCULLIS_", |c| {
            c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
        }) {
            let variable = variable.trim_end_matches('_');
            if !cli.variables.contains(variable) && !other_variables.contains_key(variable) {
                problems.push(format!("{}: no setting reads {variable}", shown(&file)));
            }
        }
    }
    assert!(commands > 100, "only {commands} commands quoted");
    assert!(
        problems.is_empty(),
        "the docs drifted from the binary:\n{}",
        problems.join("\n")
    );
}

/// What is wrong with a table row that documents flags (its first cell `` `--flag`
/// (`PORTCULLIS_…`) ``, its second their defaults, `` `60s` `` or words such as `none`): a
/// variable that is not the flag's, a default that is no command's default for the flag.
///
/// A page named for a command (docs/sidecar.md) documents that command's flags: where it has the
/// flag, only its own default and variable count.
fn check_table_row(cli: &Cli, page: Option<&Help>, row: &str, problems: &mut Vec<String>) {
    // The helps a flag's variable and default are looked up in.
    let helps = |flag: &str| -> Vec<&Help> {
        match page.filter(|h| h.flags.contains_key(flag)) {
            Some(help) => vec![help],
            None => cli.commands.values().collect(),
        }
    };
    let cells: Vec<&str> = row
        .trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect();
    let Some(first) = cells.first().filter(|c| c.starts_with("`--")) else {
        return;
    };
    let flags: Vec<&str> = first
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| span.starts_with("--"))
        .collect();
    let Some(second) = cells.get(1) else {
        return;
    };
    // Only a cell of code spans alone states defaults (`none`, `off` and `required` are words).
    let values: Vec<&str> = second.split('`').skip(1).step_by(2).collect();
    let words: String = second.split('`').step_by(2).collect();
    if values.len() != flags.len() || !words.chars().all(|c| c == ',' || c == ' ') {
        return;
    }
    for (flag, value) in flags.iter().zip(values) {
        let defaults: Vec<&str> = helps(flag)
            .iter()
            .filter_map(|h| h.defaults.get(*flag).map(String::as_str))
            .collect();
        if !defaults.contains(&value) {
            problems.push(format!(
                "{flag} defaults to {defaults:?} in the binary, not `{value}`"
            ));
        }
    }
}

/// What is wrong with the `` `--flag` (`PORTCULLIS_…`) `` and `` `--flag`/`PORTCULLIS_…` `` pairs
/// of `line`: a variable that is not the flag's.
fn check_pairs(cli: &Cli, page: Option<&Help>, line: &str, problems: &mut Vec<String>) {
    for (i, _) in line.match_indices("`--") {
        let rest = &line[i + 1..];
        let Some(end) = rest.find('`') else {
            continue;
        };
        let flag = &rest[..end];
        let after = &rest[end + 1..];
        let Some(variable) = after
            .strip_prefix(" (`")
            .or_else(|| after.strip_prefix("/`"))
            .and_then(|v| v.split('`').next())
            .filter(|v| v.starts_with("PORTCULLIS_"))
        else {
            continue;
        };
        let helps: Vec<&Help> = match page.filter(|h| h.flags.contains_key(flag)) {
            Some(help) => vec![help],
            None => cli.commands.values().collect(),
        };
        if !helps
            .iter()
            .any(|h| h.variables.get(flag).is_some_and(|v| v == variable))
        {
            problems.push(format!("no command reads {flag} from {variable}"));
        }
    }
}

/// The keys of `config docs`' tables.
fn config_keys() -> BTreeSet<String> {
    run_ok(&["config", "docs"])
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// `key = value` lines of a page's ```toml blocks.
fn toml_keys(text: &str) -> Vec<(usize, String)> {
    let mut keys = Vec::new();
    for (start, block) in toml_blocks(text) {
        if is_profiles(&block) {
            continue;
        }
        for (n, line) in block.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || trimmed.starts_with('[') {
                continue;
            }
            if let Some((key, _)) = trimmed.split_once('=') {
                keys.push((start + n, key.trim().to_owned()));
            }
        }
    }
    keys
}

/// The ```toml blocks of a page: the line number of each one's first line, and its text.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(lang) = line.trim().strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None if lang.trim() == "toml" => current = Some((n + 2, String::new())),
                None => {}
            }
            continue;
        }
        if let Some((_, block)) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

/// A client profile file (docs/profiles.md) rather than a config file.
fn is_profiles(block: &str) -> bool {
    block.lines().any(|l| l.trim().starts_with("[profiles."))
}

/// What the binary says of each profile file the docs show: each must check out.
fn profile_files(page: &str, text: &str, problems: &mut Vec<String>) {
    for (line, block) in toml_blocks(text) {
        if !is_profiles(&block) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.toml");
        std::fs::write(&file, &block).unwrap();
        let output = crate::support::bin()
            .args(["profiles", "--profiles-file", path(&file)])
            .output()
            .unwrap();
        if !output.status.success() {
            problems.push(format!(
                "{page}:{line}: the binary refuses this profile file: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_quote_only_metrics_the_server_or_a_sidecar_exposes() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let token = root.path().join("sidecar-token");
    std::fs::write(&token, "docs-match-secret\n").unwrap();
    let server = Server::start_with(&data, &["--sidecar-token-file", path(&token)]);
    let sidecar = Server::spawn(&[
        "sidecar",
        "--upstream",
        &server.addr,
        "--upstream-token-file",
        path(&token),
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ]);
    // A family shows once it has a sample: one SCIM request, one admin call (both refused).
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let scim = client
        .get(format!("{}/scim/v2/Users", server.http).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(scim.status(), 401);
    let admin = crate::support::run(&[
        "admin",
        "--server",
        &server.addr,
        "--token",
        "pcl_0000000000000000_not-a-token-of-this-server-at-all",
        "whoami",
    ]);
    assert!(!admin.status.success());
    let scrapes = [
        crate::metrics::scraped(&server).await,
        crate::metrics::scraped(&sidecar).await,
    ];
    let not_metrics: BTreeMap<&str, &str> = NOT_METRICS.iter().copied().collect();
    let mut problems = Vec::new();
    let mut quoted = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (n, line) in text.lines().enumerate() {
            for name in words(line, "portcullis_", |c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
            }) {
                quoted += 1;
                if !scrapes.iter().any(|s| s.declares(name)) && !not_metrics.contains_key(name) {
                    problems.push(format!("{}:{}: no metric {name}", shown(&page), n + 1));
                }
            }
        }
    }
    assert!(quoted > 20, "the docs quote {quoted} metrics");
    assert!(
        problems.is_empty(),
        "the docs name metrics nothing exposes:\n{}",
        problems.join("\n")
    );
}

#[test]
fn commands_in_code_are_checked_against_their_own_flags() {
    let (help, variables) = parse_help(
        "Usage: portcullis admin [OPTIONS] <COMMAND>\n\nCommands:\n  users   Users\n          wrapped\n  help    Print\n\nOptions:\n      --server <SERVER>  The server [env: PORTCULLIS_SERVER=]\n      --json             JSON\n  -h, --help             Print help\n",
    );
    assert_eq!(help.subcommands, BTreeSet::from(["users".to_owned()]));
    assert_eq!(help.flags.get("--server"), Some(&true));
    assert_eq!(help.flags.get("--json"), Some(&false));
    assert_eq!(help.flags.get("--help"), Some(&false));
    assert_eq!(variables, BTreeSet::from(["PORTCULLIS_SERVER".to_owned()]));

    let mut cli = Cli::default();
    cli.commands.insert(
        Vec::new(),
        Help {
            subcommands: BTreeSet::from(["admin".to_owned()]),
            ..Help::default()
        },
    );
    cli.commands.insert(vec!["admin".to_owned()], help);
    cli.commands.insert(
        vec!["admin".to_owned(), "users".to_owned()],
        Help {
            flags: BTreeMap::from([("--limit".to_owned(), true), ("--server".to_owned(), true)]),
            variables: BTreeMap::from([("--server".to_owned(), "PORTCULLIS_SERVER".to_owned())]),
            defaults: BTreeMap::from([("--limit".to_owned(), "50".to_owned())]),
            ..Help::default()
        },
    );
    let problems = |snippet: &str| {
        let mut found = Vec::new();
        check_commands(&cli, snippet, &mut found);
        found
    };
    // A global flag's value is not taken for a subcommand; a pipe ends the command.
    assert!(problems("x=$(portcullis admin --server h users --limit 5 | grep --nope)").is_empty());
    assert_eq!(
        problems("portcullis admin users --limt 5"),
        ["`portcullis admin users` has no --limt"]
    );
    assert_eq!(
        problems("portcullis admin groups list"),
        ["`portcullis admin` has no subcommand `groups`"]
    );
    // Placeholders end the check; so does text that merely ends in `portcullis`.
    assert!(problems("portcullis admin … --whatever").is_empty());
    assert!(problems("my-portcullis admin --whatever").is_empty());
    // Table rows: a flag's variable and default.
    let rows = |row: &str| {
        let mut found = Vec::new();
        check_table_row(&cli, None, row, &mut found);
        found
    };
    let pairs = |line: &str| {
        let mut found = Vec::new();
        check_pairs(&cli, None, line, &mut found);
        found
    };
    assert!(pairs("| `--server` (`PORTCULLIS_SERVER`) | none | the server |").is_empty());
    assert!(pairs("with `--server`/`PORTCULLIS_SERVER` and `--limit` (`10`)").is_empty());
    assert_eq!(
        pairs("give `--server` (`PORTCULLIS_ADDR`) or `--limit`/`PORTCULLIS_LIMIT`"),
        [
            "no command reads --server from PORTCULLIS_ADDR",
            "no command reads --limit from PORTCULLIS_LIMIT"
        ]
    );
    assert!(rows("| `--limit`, `--server` | `50`, none | x |").is_empty());
    assert!(rows("| `--limit` | `50` | how many |").is_empty());
    assert_eq!(
        rows("| `--limit` | `20` | how many |"),
        ["--limit defaults to [\"50\"] in the binary, not `20`"]
    );
    let (help, _) = parse_help(
        "Options:\n      --limit <LIMIT>\n          How many\n          \n          [env: PORTCULLIS_LIMIT=]\n          [default: 50]\n",
    );
    assert_eq!(help.defaults["--limit"], "50");
    assert_eq!(help.variables["--limit"], "PORTCULLIS_LIMIT");
    assert_eq!(
        words("use --data-dir, not ---x or a--b (--json)", "--", flag_char),
        ["--data-dir", "--json"]
    );
}
