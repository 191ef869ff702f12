//! Settings from a TOML file (`--config`), the environment and flags. A flag wins over its
//! environment variable, which wins over the file, which wins over the default.
//!
//! The file's keys are the flags' names: top-level keys for the global flags (`log-format`,
//! `log-filter`), and one table per long-running subcommand:
//!
//! ```toml
//! log-format = "json"
//!
//! [serve]
//! data-dir = "/var/lib/portcullis"
//! grpc-addr = "0.0.0.0:50051"
//!
//! [sidecar]
//! upstream = "https://portcullis.internal:50051"
//! max-staleness = "30s"
//! ```
//!
//! So there is one definition of every setting (its clap flag: name, environment variable,
//! default, parser, help) and the file goes through the same parsing and validation as a flag:
//! the file's values become flags for whatever neither the command line nor the environment
//! set, and clap checks them all before anything starts. An unknown key, a section for no
//! subcommand, or a value clap rejects is an error naming the file and the key.

use anyhow::{Context, anyhow, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The subcommands a config file has a section for.
pub const SECTIONS: &[&str] = &["serve", "sidecar"];

/// The id of the global `--config` flag.
const CONFIG: &str = "config";

/// Parses `argv` with `command`, filling in from the config file (if `--config` or
/// `PORTCULLIS_CONFIG` names one) what neither a flag nor the environment set. Errors in the
/// command line itself exit as clap does (with usage); errors in the file are returned.
pub fn matches(command: &Command, argv: Vec<OsString>) -> anyhow::Result<ArgMatches> {
    // A required setting may come from the file: the first pass, which finds the file and what
    // flags and the environment set, lets it be missing; the last pass checks everything.
    let lenient = command
        .clone()
        .mut_subcommands(|sub| sub.mut_args(|arg| arg.required(false)));
    let first = lenient
        .clone()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    // A client command's profile (`profiles`) fills in what flags and the environment did not.
    let profile = crate::profiles::args(command, &first)?;
    let Some(path) = first.get_one::<PathBuf>(CONFIG).cloned() else {
        let mut argv = argv;
        argv.extend(profile);
        return Ok(command
            .clone()
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| e.exit()));
    };
    let table = read(&path)?;
    let extra = file_args(command, &first, &table)
        .map_err(|e| anyhow!("config `{}`: {e}", path.display()))?;
    check_values(&lenient, &table).map_err(|e| anyhow!("config `{}`: {e}", path.display()))?;
    let mut argv = argv;
    argv.extend(extra);
    argv.extend(profile);
    command.clone().try_get_matches_from(argv).map_err(|e| {
        anyhow!(
            "config `{}`: {}",
            path.display(),
            e.kind().as_str().map_or_else(
                || e.to_string(),
                |kind| format!("{kind}: {}", first_line(&e.to_string()))
            )
        )
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// The file, parsed as TOML.
fn read(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file `{}`", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow!("config `{}`: {e}", path.display()))
}

/// The flags the file adds: each key of the top level (global flags) and of the running
/// subcommand's section that neither a flag nor the environment set. Every key of every
/// section is checked, used or not.
fn file_args(
    command: &Command,
    matches: &ArgMatches,
    table: &toml::Table,
) -> anyhow::Result<Vec<OsString>> {
    let running = matches.subcommand();
    let mut args = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => {
                let sub = SECTIONS
                    .contains(&key.as_str())
                    .then(|| command.find_subcommand(key))
                    .flatten()
                    .ok_or_else(|| {
                        anyhow!(
                            "[{key}]: no such section; the sections are {}",
                            SECTIONS
                                .iter()
                                .map(|s| format!("[{s}]"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                for (name, value) in section {
                    let arg = setting(sub, name).ok_or_else(|| {
                        anyhow!(
                            "[{key}] {name}: no such setting; [{key}] takes {}",
                            names(sub, false).join(", ")
                        )
                    })?;
                    let given = match running {
                        Some((running, sub_matches)) if running == key => sub_matches,
                        _ => continue,
                    };
                    if !set_outside_file(given, arg) {
                        args.extend(flag(arg, value).map_err(|e| anyhow!("[{key}] {name}: {e}"))?);
                    }
                }
            }
            value => {
                let arg = setting(command, key)
                    .filter(|a| a.is_global_set())
                    .ok_or_else(|| {
                        anyhow!(
                            "{key}: no such top-level setting; the top level takes {}",
                            names(command, true).join(", ")
                        )
                    })?;
                if !set_outside_file(matches, arg) {
                    args.extend(flag(arg, value).map_err(|e| anyhow!("{key}: {e}"))?);
                }
            }
        }
    }
    Ok(args)
}

/// Parses every value of the file as its flag, whether or not a flag or the environment
/// overrides it this time and whichever subcommand runs: a file is valid or it is not.
fn check_values(lenient: &Command, table: &toml::Table) -> anyhow::Result<()> {
    let parse = |argv: Vec<OsString>, place: &str| -> anyhow::Result<()> {
        lenient
            .clone()
            .try_get_matches_from(argv)
            .map(drop)
            .map_err(|e| anyhow!("{place}{}", first_line(&e.to_string())))
    };
    for (key, value) in table {
        match value {
            toml::Value::Table(section) => {
                let Some(sub) = lenient.find_subcommand(key) else {
                    continue;
                };
                for (name, value) in section {
                    if let Some(arg) = setting(sub, name) {
                        let mut argv: Vec<OsString> = vec!["portcullis".into(), key.into()];
                        argv.extend(flag(arg, value).map_err(|e| anyhow!("[{key}] {name}: {e}"))?);
                        parse(argv, &format!("[{key}] {name}: "))?;
                    }
                }
            }
            value => {
                if let Some(arg) = setting(lenient, key) {
                    let mut argv: Vec<OsString> = vec!["portcullis".into()];
                    argv.extend(flag(arg, value).map_err(|e| anyhow!("{key}: {e}"))?);
                    // Any subcommand will do to parse a global flag.
                    argv.push("config".into());
                    argv.push("docs".into());
                    parse(argv, &format!("{key}: "))?;
                }
            }
        }
    }
    Ok(())
}

/// The flag of `command` a file key names (not `--config` or `--help`).
fn setting<'c>(command: &'c Command, name: &str) -> Option<&'c Arg> {
    command
        .get_arguments()
        .filter(|a| configurable(a))
        .find(|a| a.get_long() == Some(name))
}

fn configurable(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && arg.get_id() != CONFIG
        && arg.get_id() != "quiet"
        && !matches!(arg.get_action(), ArgAction::Help | ArgAction::Version)
}

/// The keys a file takes for `command`: its global flags (at the top level) or its own.
fn names(command: &Command, global: bool) -> Vec<String> {
    command
        .get_arguments()
        .filter(|a| configurable(a) && a.is_global_set() == global)
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// Whether a flag or the environment set `arg` (then the file must not).
fn set_outside_file(matches: &ArgMatches, arg: &Arg) -> bool {
    matches!(
        matches.value_source(arg.get_id().as_str()),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// A file value as the flag clap parses: `--name value` (repeated for arrays), `--name` for a
/// true switch, nothing for a false one.
fn flag(arg: &Arg, value: &toml::Value) -> anyhow::Result<Vec<OsString>> {
    let long = format!("--{}", arg.get_long().unwrap_or_default());
    let switch = matches!(arg.get_action(), ArgAction::SetTrue);
    let scalar = |v: &toml::Value| -> anyhow::Result<String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => bail!(
                "expected a string, number or boolean, found {}",
                other.type_str()
            ),
        }
    };
    Ok(match value {
        toml::Value::Boolean(on) if switch => {
            if *on {
                vec![long.into()]
            } else {
                Vec::new()
            }
        }
        _ if switch => bail!("expected true or false, found {}", value.type_str()),
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.push(OsString::from(&long));
                out.push(scalar(item)?.into());
            }
            out
        }
        value => vec![long.into(), scalar(value)?.into()],
    })
}

/// `portcullis config print`: the settings `subcommand` would run with (the file, the
/// environment, the defaults), as a config file with where each value came from; with `json`,
/// as one document (`{"global": {key: {"value", "source"}}, "<subcommand>": {…}}`). Secrets are
/// never settings (they are read from the files the settings name), but a key that looks like
/// one is redacted all the same.
pub fn print(
    command: &Command,
    global: &[OsString],
    subcommand: &str,
    json: bool,
) -> anyhow::Result<()> {
    let mut argv: Vec<OsString> = vec!["portcullis".into()];
    argv.extend_from_slice(global);
    argv.push(subcommand.into());
    let matches = matches(command, argv)?;
    let sub = command
        .find_subcommand(subcommand)
        .ok_or_else(|| anyhow!("no subcommand `{subcommand}`"))?;
    let sub_matches = matches
        .subcommand_matches(subcommand)
        .ok_or_else(|| anyhow!("no subcommand `{subcommand}`"))?;
    let globals: Vec<Setting> = command
        .get_arguments()
        .filter(|a| configurable(a) && a.is_global_set())
        .map(|arg| Setting::of(&matches, arg))
        .collect();
    let own: Vec<Setting> = sub
        .get_arguments()
        .filter(|a| configurable(a) && !a.is_global_set())
        .map(|arg| Setting::of(sub_matches, arg))
        .collect();
    if json {
        let object = |settings: &[Setting]| -> serde_json::Map<String, serde_json::Value> {
            settings
                .iter()
                .map(|s| (s.name.clone(), s.json()))
                .collect()
        };
        return crate::stdout::json(&serde_json::json!({
            "global": object(&globals),
            subcommand: object(&own),
        }));
    }
    let mut out = String::from(
        "# The effective settings: a flag wins over its environment variable, which wins over\n\
         # the config file, which wins over the default.\n",
    );
    for setting in &globals {
        out.push_str(&setting.line());
    }
    out.push_str(&format!("\n[{subcommand}]\n"));
    for setting in &own {
        out.push_str(&setting.line());
    }
    Ok(crate::stdout::print(out)?)
}

/// One effective setting: its key, values, where they came from, and how to show them.
struct Setting {
    name: String,
    values: Vec<String>,
    source: String,
    /// A key that looks like a secret: its values are redacted.
    secret: bool,
    /// An on/off flag: its value is a boolean.
    switch: bool,
}

impl Setting {
    fn of(matches: &ArgMatches, arg: &Arg) -> Setting {
        let id = arg.get_id().as_str();
        let name = arg.get_long().unwrap_or(id).to_owned();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            // `print` passes no flag but `--config`: what the command line set, the file did.
            Some(ValueSource::CommandLine) => "config file".to_owned(),
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => "default".to_owned(),
            _ => "not set".to_owned(),
        };
        let secret =
            (name.contains("token") || name.contains("secret")) && !name.ends_with("-file");
        Setting {
            name,
            values,
            source,
            secret,
            switch: matches!(arg.get_action(), ArgAction::SetTrue),
        }
    }

    fn shown(&self, v: &str) -> String {
        if self.secret {
            "<redacted>".to_owned()
        } else {
            v.to_owned()
        }
    }

    /// As a config file line, with its source.
    fn line(&self) -> String {
        let (name, source) = (&self.name, &self.source);
        let toml = |v: &str| toml::Value::String(self.shown(v)).to_string();
        match (self.values.as_slice(), self.switch) {
            ([], _) => format!("# {name} is not set\n"),
            ([v], true) => format!("{name} = {v}   # {source}\n"),
            ([v], false) => format!("{name} = {}   # {source}\n", toml(v)),
            (many, _) => format!(
                "{name} = [{}]   # {source}\n",
                many.iter().map(|v| toml(v)).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// For `--json`: `{"value", "source"}`, the value `null` when not set, a boolean for a
    /// switch, an array for a setting given several times.
    fn json(&self) -> serde_json::Value {
        let value = match (self.values.as_slice(), self.switch) {
            ([], _) => serde_json::Value::Null,
            ([v], true) => serde_json::Value::Bool(v == "true"),
            ([v], false) => self.shown(v).into(),
            (many, _) => many.iter().map(|v| self.shown(v)).collect(),
        };
        serde_json::json!({ "value": value, "source": self.source })
    }
}

/// `portcullis config docs`: docs/config.md's tables, generated from the flags themselves.
pub fn docs(command: &Command) -> String {
    let mut out = String::new();
    let table = |out: &mut String, args: Vec<&Arg>| {
        out.push_str(
            "| key | environment | flag | default | meaning |\n| --- | --- | --- | --- | --- |\n",
        );
        for arg in args {
            let long = arg.get_long().unwrap_or_default();
            let env = arg
                .get_env()
                .map_or_else(|| "—".to_owned(), |e| format!("`{}`", e.to_string_lossy()));
            let default = match arg.get_default_values() {
                [] if matches!(arg.get_action(), ArgAction::SetTrue) => "`false`".to_owned(),
                [] if arg.is_required_set() => "required".to_owned(),
                [] => "none".to_owned(),
                values => values
                    .iter()
                    .map(|v| format!("`{}`", v.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|h| h.to_string().replace('\n', " "))
                .unwrap_or_default();
            out.push_str(&format!(
                "| `{long}` | {env} | `--{long}` | {default} | {help} |\n"
            ));
        }
    };
    out.push_str("### Top level (every subcommand)\n\n");
    table(
        &mut out,
        command
            .get_arguments()
            .filter(|a| configurable(a) && a.is_global_set())
            .collect(),
    );
    for section in SECTIONS {
        if let Some(sub) = command.find_subcommand(section) {
            out.push_str(&format!("\n### `[{section}]`: `portcullis {section}`\n\n"));
            table(
                &mut out,
                sub.get_arguments()
                    .filter(|a| configurable(a) && !a.is_global_set())
                    .collect(),
            );
        }
    }
    out
}
