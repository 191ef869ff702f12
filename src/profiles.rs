//! Client profiles, as kubectl's contexts: `~/.config/portcullis/config.toml` names servers
//! and how to reach them, so `portcullis admin`, `policies`, `check`, `workload replay` and
//! `import --server` need no connection flags. Docs in docs/profiles.md.
//!
//! ```toml
//! profile = "prod"                      # used when neither --profile nor PORTCULLIS_PROFILE is
//!
//! [profiles.prod]
//! server = "https://portcullis.example.com:50051"
//! ca-file = "prod-ca.pem"               # relative paths: from this file's directory
//! token-file = "prod-admin.token"       # the admin API token
//! decision-token-file = "prod-decision.token"
//! ```
//!
//! A profile's values are flags for whatever neither the command line nor the environment
//! set (as the server's config file, `config`), so a flag always wins and clap checks them.
//! The file holds no secret itself: tokens stay in their own files.

use anyhow::{Context, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The id of the `--profile` flag.
const PROFILE: &str = "profile";

/// The id of the `--profiles-file` flag.
const PROFILES_FILE: &str = "profiles_file";

/// Which profile a client command connects with (flattened into each client command).
#[derive(Debug, Clone, clap::Args)]
pub struct ProfileArgs {
    /// The client profile to connect with (docs/profiles.md): its server, CA and token files
    /// fill in the flags not given.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_PROFILE",
        help_heading = "Profile"
    )]
    pub profile: Option<String>,
    /// The client profiles file, instead of `~/.config/portcullis/config.toml`.
    #[arg(
        long,
        global = true,
        env = "PORTCULLIS_PROFILES_FILE",
        help_heading = "Profile"
    )]
    pub profiles_file: Option<PathBuf>,
}

/// The settings a profile takes.
const KEYS: &[&str] = &[
    "server",
    "ca-file",
    "client-cert",
    "client-key",
    "token-file",
    "decision-token-file",
];

/// The keys whose values are paths (resolved from the file's directory; `~/` is the home).
const PATHS: &[&str] = &[
    "ca-file",
    "client-cert",
    "client-key",
    "token-file",
    "decision-token-file",
];

/// A profile file is a few lines per server.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The profile file: `given` (`--profiles-file`, `PORTCULLIS_PROFILES_FILE`), else
/// `$XDG_CONFIG_HOME/portcullis/config.toml`, else `~/.config/portcullis/config.toml` (none
/// without a home).
pub fn file(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path.to_owned());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let config = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("portcullis").join("config.toml"))
}

/// The file, read and checked: every profile's keys known, every value a string.
#[derive(Debug)]
pub struct Profiles {
    pub path: PathBuf,
    /// The profile used when none is named.
    pub current: Option<String>,
    pub profiles: toml::Table,
}

impl Profiles {
    /// The file at `path`, or `None` when there is none.
    pub fn read(path: &Path) -> anyhow::Result<Option<Profiles>> {
        let size = match std::fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the profiles `{}`", path.display()));
            }
        };
        anyhow::ensure!(
            size <= MAX_FILE_BYTES,
            "the profiles `{}` hold {size} bytes, more than {MAX_FILE_BYTES}",
            path.display()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the profiles `{}`", path.display()))?;
        let mut table: toml::Table = text
            .parse()
            .map_err(|e| anyhow!("profiles `{}`: {e}", path.display()))?;
        let at = |e: anyhow::Error| anyhow!("profiles `{}`: {e}", path.display());
        let current = match table.remove("profile") {
            None => None,
            Some(toml::Value::String(name)) => Some(name),
            Some(other) => {
                return Err(at(anyhow!(
                    "profile: expected a profile's name, found {}",
                    other.type_str()
                )));
            }
        };
        let profiles = match table.remove("profiles") {
            None => toml::Table::new(),
            Some(toml::Value::Table(profiles)) => profiles,
            Some(other) => {
                return Err(at(anyhow!(
                    "profiles: expected tables ([profiles.NAME]), found {}",
                    other.type_str()
                )));
            }
        };
        if let Some(key) = table.keys().next() {
            return Err(at(anyhow!(
                "{key}: no such setting; the top level takes `profile` and [profiles.NAME] tables"
            )));
        }
        for (name, profile) in &profiles {
            let toml::Value::Table(profile) = profile else {
                return Err(at(anyhow!("[profiles.{name}] must be a table")));
            };
            for (key, value) in profile {
                if key == "token" {
                    return Err(at(anyhow!(
                        "[profiles.{name}] token: a profile holds no secret; put the token in \
                         a file (mode 0600) and name it with `token-file`"
                    )));
                }
                if !KEYS.contains(&key.as_str()) {
                    return Err(at(anyhow!(
                        "[profiles.{name}] {key}: no such setting; a profile takes {}",
                        KEYS.join(", ")
                    )));
                }
                if !value.is_str() {
                    return Err(at(anyhow!(
                        "[profiles.{name}] {key}: expected a string, found {}",
                        value.type_str()
                    )));
                }
            }
        }
        if let Some(current) = &current {
            anyhow::ensure!(
                profiles.contains_key(current),
                "profiles `{}`: profile = \"{current}\": no [profiles.{current}]",
                path.display()
            );
        }
        Ok(Some(Profiles {
            path: path.to_owned(),
            current,
            profiles,
        }))
    }

    /// The profile `name`'s settings, paths resolved.
    pub fn settings(&self, name: &str) -> anyhow::Result<Vec<(&'static str, String)>> {
        let Some(toml::Value::Table(profile)) = self.profiles.get(name) else {
            bail!(
                "no profile `{name}` in `{}`; it has {}",
                self.path.display(),
                self.names()
            );
        };
        let base = self.path.parent().unwrap_or(Path::new("."));
        Ok(KEYS
            .iter()
            .filter_map(|key| {
                let value = profile.get(*key)?.as_str()?;
                let value = if PATHS.contains(key) {
                    resolve(base, value).display().to_string()
                } else {
                    value.to_owned()
                };
                Some((*key, value))
            })
            .collect())
    }

    fn names(&self) -> String {
        if self.profiles.is_empty() {
            return "none".to_owned();
        }
        self.profiles
            .keys()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `value` as a path: `~/…` from the home, relative from `base`.
fn resolve(base: &Path, value: &str) -> PathBuf {
    if let Some(rest) = value.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let path = PathBuf::from(value);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// The flags the chosen profile adds to the running command (`matches`: the command line and
/// environment, parsed leniently): for each of its settings the command takes, when neither a
/// flag nor the environment set it. Nothing when no profile is chosen and the file names none.
pub fn args(command: &Command, matches: &ArgMatches) -> anyhow::Result<Vec<OsString>> {
    // The commands that talk to a server as a client; `serve` and `sidecar` have their config.
    let mut path = vec![command];
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        let Some(next) = path.last().and_then(|c| c.find_subcommand(name)) else {
            break;
        };
        path.push(next);
        leaf = sub;
    }
    let Some(top) = path.get(1).map(|c| c.get_name()) else {
        return Ok(Vec::new());
    };
    if !["admin", "policies", "check", "workload", "import"].contains(&top) {
        return Ok(Vec::new());
    }
    // The leaf has them when its command is a client's (`workload generate` is not).
    let named = leaf.try_get_one::<String>(PROFILE).ok().flatten().cloned();
    let given = leaf.try_get_one::<PathBuf>(PROFILES_FILE).ok().flatten();
    let Some(file) = file(given.map(PathBuf::as_path)) else {
        if let Some(name) = named {
            bail!("--profile {name}: no profile file (HOME and XDG_CONFIG_HOME are unset)");
        }
        return Ok(Vec::new());
    };
    let Some(profiles) = Profiles::read(&file)? else {
        if let Some(name) = named {
            bail!(
                "--profile {name}: there is no profile file `{}` (docs/profiles.md)",
                file.display()
            );
        }
        return Ok(Vec::new());
    };
    let Some(name) = named.or_else(|| profiles.current.clone()) else {
        return Ok(Vec::new());
    };
    // An offline import (its data dir given) talks to no server.
    if top == "import" && set(leaf, find(&path, "data-dir")) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (key, value) in profiles.settings(&name)? {
        let Some(arg) = find(&path, flag(top, key)) else {
            continue;
        };
        // A token given another way wins over the profile's token file.
        if flag(top, key) == "token-file" && set(leaf, find(&path, "token")) {
            continue;
        }
        if !set(leaf, Some(arg)) {
            out.push(format!("--{}", flag(top, key)).into());
            out.push(value.into());
        }
    }
    Ok(out)
}

/// The running command's flag for a profile's `key`: the admin token's file is `--token-file`
/// where an admin token is sent; the decision token's is `--token-file` of `check` and
/// `workload replay` (which send only that one).
fn flag(top: &str, key: &'static str) -> &'static str {
    match (top, key) {
        ("check" | "workload", "token-file") => "",
        ("check" | "workload", "decision-token-file") => "token-file",
        _ => key,
    }
}

/// The argument `--long` of the running command: its own, or a global one of a parent.
fn find<'c>(path: &[&'c Command], long: &str) -> Option<&'c Arg> {
    let (leaf, parents) = path.split_last()?;
    leaf.get_arguments()
        .chain(
            parents
                .iter()
                .flat_map(|c| c.get_arguments())
                .filter(|a| a.is_global_set()),
        )
        .find(|a| a.get_long() == Some(long))
}

/// Whether a flag or the environment set `arg`.
fn set(matches: &ArgMatches, arg: Option<&Arg>) -> bool {
    arg.is_some_and(|arg| {
        matches!(
            matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })
}

/// `portcullis profiles`: the profiles of the file, the one in use marked.
/// The `portcullis profiles` command's flags: which file and profile, and `--json`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    json: crate::stdout::JsonArg,
}

/// `portcullis profiles`: the profiles of the file, the one in use marked; as a table, or with
/// `--json` a document with each profile's settings (paths resolved).
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let given = args.profile.profiles_file.as_deref();
    let named = args.profile.profile.as_deref();
    let file = file(given).context("no profile file: HOME and XDG_CONFIG_HOME are unset")?;
    let Some(profiles) = Profiles::read(&file)? else {
        if args.json.json {
            return crate::stdout::json(&serde_json::json!({
                "file": file, "exists": false, "current": named, "profiles": [],
            }));
        }
        return Ok(crate::stdout::print(format_args!(
            "no profiles: `{}` does not exist (docs/profiles.md)\n",
            file.display()
        ))?);
    };
    let current = named.map(str::to_owned).or(profiles.current.clone());
    if args.json.json {
        let mut listed = Vec::new();
        for name in profiles.profiles.keys() {
            let settings: serde_json::Map<String, serde_json::Value> = profiles
                .settings(name)?
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect();
            listed.push(serde_json::json!({
                "name": name,
                "current": current.as_deref() == Some(name),
                "settings": settings,
            }));
        }
        return crate::stdout::json(&serde_json::json!({
            "file": file, "exists": true, "current": current, "profiles": listed,
        }));
    }
    let mut text = format!("{:<2}{:<20}{}\n", "", "PROFILE", "SERVER");
    for name in profiles.profiles.keys() {
        let server = profiles
            .settings(name)?
            .into_iter()
            .find(|(k, _)| *k == "server")
            .map_or_else(|| "(default)".to_owned(), |(_, v)| v);
        let mark = if current.as_deref() == Some(name) {
            "*"
        } else {
            ""
        };
        text.push_str(&format!("{mark:<2}{name:<20}{server}\n"));
    }
    Ok(crate::stdout::print(text)?)
}
