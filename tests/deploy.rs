//! The deployment files under `deploy/` against the binary they run: every manifest parses and
//! names its objects, containers have an image, resources and probes on ports they listen on,
//! and every flag and `PORTCULLIS_*` variable in the manifests, the systemd units and the
//! example environment files is one the real `portcullis <subcommand> --help` lists (and the
//! examples list every setting it has).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// The health service names a gRPC probe may ask for: "" (overall) or one of ours.
const HEALTH_SERVICE_PREFIX: &str = "portcullis.v1.";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under `deploy/` whose name ends with `suffix`, sorted.
fn deploy_files(suffix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, suffix: &str, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, suffix, found);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&deploy_dir(), suffix, &mut found);
    found.sort();
    found
}

fn display(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", display(path)))
}

// ---------------------------------------------------------------------------------------------
// What the binary takes

/// The options and environment variables `portcullis <subcommand> --help` lists.
#[derive(Debug)]
struct Help {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

/// Runs the real binary once per subcommand, with no `PORTCULLIS_*` variable of ours in its
/// environment (clap would print their values in the help).
#[derive(Default)]
struct Binary {
    helps: BTreeMap<String, Help>,
}

impl Binary {
    fn help(&mut self, subcommand: &str) -> &Help {
        self.helps.entry(subcommand.to_owned()).or_insert_with(|| {
            let mut command = crate::support::bin();
            command.args([subcommand, "--help"]);
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("PORTCULLIS_") {
                    command.env_remove(name);
                }
            }
            let output = command.output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "`portcullis {subcommand} --help` failed: is `{subcommand}` a subcommand?\n\
                     {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            parse_help(&stdout)
        })
    }
}

/// Options from the lines that define them (`  -h, --help`, `      --data-dir <DATA_DIR>`), and
/// every `[env: NAME=…]`.
fn parse_help(text: &str) -> Help {
    let mut flags = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        for word in line.split_whitespace() {
            let word = word.trim_end_matches(',');
            if !word.starts_with('-') {
                break;
            }
            if word.starts_with("--") {
                flags.insert(word.split('=').next().unwrap().to_owned());
            }
        }
    }
    let env = text
        .split("[env: ")
        .skip(1)
        .map(|rest| rest.split(['=', ']']).next().unwrap().to_owned())
        .collect();
    Help { flags, env }
}

/// The `--flag`s of an argument list (`--flag value` or `--flag=value`), with their values.
fn flags(argv: &[String]) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut words = argv.iter().peekable();
    while let Some(word) = words.next() {
        let Some(name) = word.strip_prefix("--") else {
            continue;
        };
        match name.split_once('=') {
            Some((name, value)) => found.push((format!("--{name}"), Some(value.to_owned()))),
            None => {
                let value = words.next_if(|next| !next.starts_with('-')).cloned();
                found.push((word.clone(), value));
            }
        }
    }
    found
}

/// Asserts that `argv` (after the binary: the subcommand, then its arguments) runs a
/// subcommand with options it has.
fn assert_flags_known(binary: &mut Binary, argv: &[String], what: &str) {
    let subcommand = argv
        .first()
        .filter(|s| !s.starts_with('-'))
        .unwrap_or_else(|| panic!("{what}: no subcommand in {argv:?}"));
    let help = binary.help(subcommand);
    for (flag, _) in flags(argv) {
        assert!(
            help.flags.contains(&flag),
            "{what}: `portcullis {subcommand}` has no option {flag} (it has {:?})",
            help.flags
        );
    }
}

fn assert_env_known(binary: &mut Binary, subcommand: &str, names: &BTreeSet<String>, what: &str) {
    let help = binary.help(subcommand);
    for name in names {
        assert!(
            help.env.contains(name),
            "{what}: `portcullis {subcommand}` reads no {name} (it reads {:?})",
            help.env
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests

struct Manifest {
    path: PathBuf,
    docs: Vec<Yaml>,
}

fn manifests() -> Vec<Manifest> {
    let paths: Vec<PathBuf> = deploy_files(".yaml")
        .into_iter()
        .chain(deploy_files(".yml"))
        .collect();
    assert!(!paths.is_empty(), "no manifests under deploy/");
    paths
        .into_iter()
        .map(|path| {
            let docs = YamlLoader::load_from_str(&read(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", display(&path)));
            // An empty document (comments, or nothing between two `---`) is no object.
            let docs: Vec<Yaml> = docs.into_iter().filter(|d| !d.is_null()).collect();
            assert!(!docs.is_empty(), "{}: no documents", display(&path));
            Manifest { path, docs }
        })
        .collect()
}

fn str_of<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {yaml:?}"))
}

fn strings(yaml: &Yaml) -> Vec<String> {
    match yaml {
        Yaml::BadValue | Yaml::Null => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| match item {
                Yaml::String(s) => s.clone(),
                Yaml::Integer(i) => i.to_string(),
                other => panic!("expected a string in a command or args, found {other:?}"),
            })
            .collect(),
        other => panic!("expected a list of strings, found {other:?}"),
    }
}

fn items(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map(Vec::as_slice).unwrap_or_default()
}

/// A document's name for messages: `file: Kind/name`.
fn object_name(manifest: &Manifest, doc: &Yaml) -> String {
    format!(
        "{}: {}/{}",
        display(&manifest.path),
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The pod template's spec of a workload, or a Pod's own.
fn pod_spec(doc: &Yaml) -> Option<&Yaml> {
    let spec = match doc["kind"].as_str()? {
        "Pod" => &doc["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    };
    spec.as_hash().map(|_| spec)
}

fn pod_labels(doc: &Yaml) -> Option<&Yaml> {
    let labels = match doc["kind"].as_str()? {
        "Pod" => &doc["metadata"]["labels"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
        _ => &doc["spec"]["template"]["metadata"]["labels"],
    };
    labels.as_hash().map(|_| labels)
}

/// Containers and init containers (native sidecars are init containers).
fn containers(pod: &Yaml) -> impl Iterator<Item = &Yaml> {
    items(&pod["initContainers"])
        .iter()
        .chain(items(&pod["containers"]))
}

/// What a container runs after the `portcullis` binary (the subcommand first), if it runs it:
/// its `command` is the binary, or it has no `command` and the image is Portcullis's.
fn portcullis_argv(container: &Yaml) -> Option<Vec<String>> {
    let command = strings(&container["command"]);
    let args = strings(&container["args"]);
    match command.split_first() {
        Some((program, rest)) => (Path::new(program).file_name()? == "portcullis")
            .then(|| rest.iter().chain(&args).cloned().collect()),
        None => container["image"]
            .as_str()
            .is_some_and(|image| image.contains("portcullis"))
            .then_some(args),
    }
}

/// The addresses a Portcullis container listens on, by flag (`--health-addr`): from its
/// arguments, else from its `PORTCULLIS_*_ADDR` variables.
fn listen_addrs(container: &Yaml, argv: &[String], what: &str) -> BTreeMap<String, String> {
    let mut addrs = BTreeMap::new();
    for env in items(&container["env"]) {
        let name = env["name"].as_str().unwrap_or_default();
        if let (Some(setting), Some(value)) = (
            name.strip_prefix("PORTCULLIS_")
                .filter(|s| s.ends_with("_ADDR")),
            env["value"].as_str(),
        ) {
            let flag = format!("--{}", setting.to_lowercase().replace('_', "-"));
            addrs.insert(flag, value.to_owned());
        }
    }
    for (flag, value) in flags(argv) {
        if flag.ends_with("-addr") {
            let value = value.unwrap_or_else(|| panic!("{what}: {flag} has no value"));
            addrs.insert(flag, value);
        }
    }
    addrs
}

/// A probe's port as a number (a named port resolved through the container's ports).
fn probe_port(container: &Yaml, port: &Yaml, what: &str) -> i64 {
    match port {
        Yaml::Integer(port) => *port,
        Yaml::String(name) => items(&container["ports"])
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("{what}: no container port named {name}")),
        other => panic!("{what}: probe port {other:?}"),
    }
}

#[test]
fn every_manifest_parses_and_names_its_objects() {
    for manifest in manifests() {
        for doc in &manifest.docs {
            let file = display(&manifest.path);
            assert!(doc.as_hash().is_some(), "{file}: a document is not a map");
            let api_version = str_of(&doc["apiVersion"], &format!("{file}: apiVersion"));
            let kind = str_of(&doc["kind"], &format!("{file}: kind"));
            let name = str_of(&doc["metadata"]["name"], &format!("{file}: metadata.name"));
            assert!(
                !api_version.is_empty() && !kind.is_empty() && !name.is_empty(),
                "{file}: {api_version} {kind} {name}"
            );
        }
    }
}

/// Asserts that a container asks for an image and resources.
fn assert_image_and_resources(container: &Yaml, what: &str) {
    let image = str_of(&container["image"], &format!("{what}: image"));
    assert!(!image.is_empty(), "{what}: empty image");
    let resources = &container["resources"];
    for (kind, resource) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            matches!(
                resources[kind][resource],
                Yaml::String(_) | Yaml::Integer(_) | Yaml::Real(_)
            ),
            "{what}: no resources.{kind}.{resource}"
        );
    }
}

/// Asserts that a probe, if the container has it, reaches a port the container listens on
/// beyond the pod's loopback (the kubelet probes the pod's IP), and that a gRPC probe goes to
/// the plaintext health listener and asks for a health service of ours.
fn assert_probe(
    container: &Yaml,
    kind: &str,
    listening: &BTreeMap<i64, (String, SocketAddr)>,
    what: &str,
) {
    let probe = &container[kind];
    if probe.as_hash().is_none() {
        return;
    }
    let what = format!("{what}: {kind}");
    let (handler, port) = ["grpc", "httpGet", "tcpSocket"]
        .into_iter()
        .find_map(|h| probe[h].as_hash().map(|_| (h, &probe[h]["port"])))
        .unwrap_or_else(|| panic!("{what}: no grpc, httpGet or tcpSocket"));
    let port = probe_port(container, port, &what);
    let (flag, addr) = listening
        .get(&port)
        .unwrap_or_else(|| panic!("{what}: port {port} is not one it listens on: {listening:?}"));
    assert!(
        !addr.ip().is_loopback(),
        "{what}: {flag} {addr} is out of the kubelet's reach"
    );
    if handler == "grpc" {
        // The kubelet's gRPC probes speak plaintext: only the health listener answers them.
        assert_eq!(
            flag, "--health-addr",
            "{what}: gRPC probes go to the --health-addr port, not {flag}'s"
        );
        let service = match &probe["grpc"]["service"] {
            Yaml::BadValue | Yaml::Null => "",
            service => str_of(service, &format!("{what}: service")),
        };
        assert!(
            service.is_empty() || service.starts_with(HEALTH_SERVICE_PREFIX),
            "{what}: health service `{service}` is neither \"\" nor ours"
        );
    }
}

#[test]
fn containers_have_an_image_resources_and_probes_on_ports_they_listen_on() {
    let mut seen_portcullis = 0;
    for manifest in manifests() {
        for doc in &manifest.docs {
            let Some(pod) = pod_spec(doc) else { continue };
            let object = object_name(&manifest, doc);
            let mut runs_portcullis = false;
            for container in containers(pod) {
                let what = format!(
                    "{object}: container {}",
                    container["name"].as_str().unwrap_or("?")
                );
                assert_image_and_resources(container, &what);
                let Some(argv) = portcullis_argv(container) else {
                    assert!(
                        !container["image"].as_str().unwrap().contains("portcullis"),
                        "{what}: runs the Portcullis image but not as \
                         `command: [/usr/local/bin/portcullis]` (or args alone)"
                    );
                    continue;
                };
                runs_portcullis = true;
                seen_portcullis += 1;
                // Port → the flag that listens on it, and where.
                let listening: BTreeMap<i64, (String, SocketAddr)> =
                    listen_addrs(container, &argv, &what)
                        .into_iter()
                        .map(|(flag, addr)| {
                            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| {
                                panic!("{what}: {flag} `{addr}` is no socket address: {e}")
                            });
                            (i64::from(addr.port()), (flag, addr))
                        })
                        .collect();
                for port in items(&container["ports"]) {
                    let number = port["containerPort"].as_i64().unwrap();
                    let listener = listening.get(&number);
                    assert!(
                        listener.is_some_and(|(_, addr)| !addr.ip().is_loopback()),
                        "{what}: declares port {number} but listens on {listening:?}"
                    );
                }
                for required in ["readinessProbe", "livenessProbe"] {
                    assert!(
                        container[required].as_hash().is_some(),
                        "{what}: no {required}"
                    );
                }
                for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    assert_probe(container, kind, &listening, &what);
                }
            }
            if runs_portcullis {
                assert_eq!(
                    pod["enableServiceLinks"].as_bool(),
                    Some(false),
                    "{object}: a Service named portcullis would inject PORTCULLIS_* variables"
                );
            }
        }
    }
    assert!(
        seen_portcullis >= 2,
        "expected a control plane and a sidecar"
    );
}

#[test]
fn services_select_pods_and_target_their_ports() {
    for manifest in manifests() {
        let pods: Vec<(&Yaml, &Yaml)> = manifest
            .docs
            .iter()
            .filter_map(|doc| Some((pod_labels(doc)?, pod_spec(doc)?)))
            .collect();
        for doc in &manifest.docs {
            if doc["kind"].as_str() != Some("Service") {
                continue;
            }
            let object = object_name(&manifest, doc);
            let selector = doc["spec"]["selector"].as_hash().unwrap_or_else(|| {
                panic!("{object}: no selector");
            });
            let selected: Vec<&Yaml> = pods
                .iter()
                .filter(|(labels, _)| selector.iter().all(|(k, v)| &labels[str_of(k, "")] == v))
                .map(|(_, spec)| *spec)
                .collect();
            assert!(
                !selected.is_empty(),
                "{object}: selects no pod in this file"
            );
            for port in items(&doc["spec"]["ports"]) {
                let target = &port["targetPort"];
                let found = selected.iter().any(|pod| {
                    containers(pod).any(|c| {
                        items(&c["ports"]).iter().any(|p| match target {
                            Yaml::String(name) => p["name"].as_str() == Some(name),
                            Yaml::Integer(n) => p["containerPort"].as_i64() == Some(*n),
                            _ => p["containerPort"] == port["port"],
                        })
                    })
                });
                assert!(found, "{object}: no container port for {port:?}");
            }
        }
    }
}

#[test]
fn manifest_flags_and_variables_are_ones_the_binary_takes() {
    let mut binary = Binary::default();
    for manifest in manifests() {
        for doc in &manifest.docs {
            let Some(pod) = pod_spec(doc) else { continue };
            for container in containers(pod) {
                let Some(argv) = portcullis_argv(container) else {
                    continue;
                };
                let what = format!(
                    "{}: container {}",
                    object_name(&manifest, doc),
                    container["name"].as_str().unwrap_or("?")
                );
                assert_flags_known(&mut binary, &argv, &what);
                let env: BTreeSet<String> = items(&container["env"])
                    .iter()
                    .filter_map(|e| e["name"].as_str())
                    .filter(|name| name.starts_with("PORTCULLIS_"))
                    .map(str::to_owned)
                    .collect();
                assert_env_known(&mut binary, &argv[0], &env, &what);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// systemd units and the example environment files

struct Unit {
    path: PathBuf,
    /// `ExecStart` after the binary: the subcommand, then its arguments.
    argv: Vec<String>,
    /// `Environment=` variables named `PORTCULLIS_*`.
    env: BTreeSet<String>,
    environment_files: Vec<String>,
}

fn units() -> Vec<Unit> {
    let paths = deploy_files(".service");
    assert!(!paths.is_empty(), "no systemd units under deploy/");
    paths
        .into_iter()
        .map(|path| {
            let text = read(&path);
            let what = display(&path);
            let value = |key: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|line| line.trim().strip_prefix(key))
                    .filter_map(|rest| rest.trim_start().strip_prefix('='))
                    .map(|v| v.trim().to_owned())
                    .collect()
            };
            let exec = value("ExecStart");
            assert_eq!(exec.len(), 1, "{what}: one ExecStart, found {exec:?}");
            // Prefixes such as `-` or `+` change how systemd runs it, not what runs.
            let exec = exec[0].trim_start_matches(['-', '@', '+', '!', ':']);
            let words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
            assert!(
                words
                    .first()
                    .is_some_and(|p| Path::new(p).file_name().is_some_and(|f| f == "portcullis")),
                "{what}: ExecStart does not run portcullis: {exec}"
            );
            let env = value("Environment")
                .iter()
                .flat_map(|v| v.split_whitespace())
                .map(|assignment| assignment.trim_matches(['"', '\'']))
                .filter_map(|assignment| assignment.split_once('=').map(|(name, _)| name))
                .filter(|name| name.starts_with("PORTCULLIS_"))
                .map(str::to_owned)
                .collect();
            let environment_files = value("EnvironmentFile")
                .into_iter()
                .map(|f| f.trim_start_matches('-').to_owned())
                .collect();
            Unit {
                path,
                argv: words[1..].to_vec(),
                env,
                environment_files,
            }
        })
        .collect()
}

/// `NAME=` lines, commented out or not: the settings an example shows.
fn example_settings(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|line| line.trim().trim_start_matches('#').trim_start())
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_units_run_subcommands_with_flags_the_binary_takes() {
    let mut binary = Binary::default();
    for unit in units() {
        let what = display(&unit.path);
        assert_flags_known(&mut binary, &unit.argv, &what);
        assert_env_known(&mut binary, &unit.argv[0], &unit.env, &what);
        let stem = unit
            .path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(
            unit.environment_files,
            [format!("/etc/portcullis/{stem}.env")],
            "{what}: EnvironmentFile"
        );
    }
}

#[test]
fn env_examples_set_every_setting_of_their_subcommand_and_nothing_else() {
    let mut binary = Binary::default();
    let examples = deploy_files(".env.example");
    assert!(!examples.is_empty(), "no example environment files");
    // Each example is the environment file of a unit, which says which subcommand reads it.
    let units = units();
    for example in examples {
        let what = display(&example);
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let installed = format!("/etc/portcullis/{}", name.trim_end_matches(".example"));
        let unit = units
            .iter()
            .find(|u| u.environment_files.contains(&installed))
            .unwrap_or_else(|| panic!("{what}: no unit reads it as {installed}"));
        let subcommand = unit.argv[0].as_str();
        let settings: BTreeSet<String> = example_settings(&read(&example))
            .into_iter()
            .filter(|s| s.starts_with("PORTCULLIS_") || s == "RUST_LOG")
            .collect();
        assert_env_known(&mut binary, subcommand, &settings, &what);
        let help = binary.help(subcommand);
        let missing: Vec<&String> = help.env.difference(&settings).collect();
        assert!(
            missing.is_empty(),
            "{what}: `portcullis {subcommand}` also reads {missing:?}; document them"
        );
    }
}

#[test]
fn help_parsing_finds_options_and_variables() {
    let help = parse_help(
        "Usage: portcullis serve [OPTIONS]\n\nOptions:\n      --data-dir <DATA_DIR>\n          \
         The store's directory, e.g. --not-this\n          [env: PORTCULLIS_DATA_DIR=]\n  \
         -v, --verbose  Say more [env: PORTCULLIS_VERBOSE=1]\n  -h, --help\n          Print help\n",
    );
    assert_eq!(
        help.flags.into_iter().collect::<Vec<_>>(),
        ["--data-dir", "--help", "--verbose"]
    );
    assert_eq!(
        help.env.into_iter().collect::<Vec<_>>(),
        ["PORTCULLIS_DATA_DIR", "PORTCULLIS_VERBOSE"]
    );
    let argv: Vec<String> = ["sidecar", "--a", "x", "--b=y", "--c", "--d"]
        .map(str::to_owned)
        .to_vec();
    assert_eq!(
        flags(&argv),
        [
            ("--a".to_owned(), Some("x".to_owned())),
            ("--b".to_owned(), Some("y".to_owned())),
            ("--c".to_owned(), None),
            ("--d".to_owned(), None),
        ]
    );
    assert_eq!(
        example_settings("# A comment = not one\nPORTCULLIS_A=1\n#PORTCULLIS_B=2\n# RUST_LOG=x\n"),
        ["PORTCULLIS_A", "PORTCULLIS_B", "RUST_LOG"]
            .map(str::to_owned)
            .into()
    );
}

/// The image: its command runs flags the binary takes, where the manifests expect the binary,
/// as a non-root user, with the data directory the manifests mount. (No container runtime here
/// to build it; this keeps the file honest with the binary and the manifests.)
#[test]
fn the_dockerfile_runs_the_binary_as_the_manifests_expect() {
    let dockerfile = read(&deploy_dir().join("Dockerfile"));
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let instruction = |name: &str| -> String {
        last_stage
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("Dockerfile: no {name} in the runtime stage"))
            .to_owned()
    };
    let json_array = |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap() };
    assert_eq!(
        json_array(instruction("ENTRYPOINT")),
        ["/usr/local/bin/portcullis"]
    );
    let cmd = json_array(instruction("CMD"));
    assert_flags_known(&mut Binary::default(), &cmd, "Dockerfile CMD");
    let user = instruction("USER");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "Dockerfile: runs as {user}"
    );
    let env = instruction("ENV");
    let (name, value) = env.split_once('=').unwrap();
    assert_env_known(
        &mut Binary::default(),
        "serve",
        &[name.to_owned()].into(),
        "Dockerfile ENV",
    );
    let manifest = read(&deploy_dir().join("kubernetes/control-plane.yaml"));
    assert!(manifest.contains(value), "the manifests mount no {value}");
    assert!(manifest.contains("/usr/local/bin/portcullis"));
}
