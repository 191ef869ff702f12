//! Reading a workload directory into a [`pdp::Model`]: the bulk import.
//!
//! Files are streamed line by line and validated as they go; a bad line is kept as a problem,
//! `file:line: field: problem`, and reading goes on (up to [`MAX_PROBLEMS`]), so one pass lists
//! every problem and a directory is imported entirely or not at all. A bad line is left out of
//! what later lines are checked against, so one problem can lead to another.
//! Blank lines, `\r\n` line ends and a leading UTF-8 byte-order mark are accepted. Keys a line does not know are ignored, so that newer exporters can
//! add fields without breaking older readers; a known key with the wrong type is an error.
//!
//! What is checked: every line is a JSON object; required fields are present (a `null` counts
//! as missing) and well-typed; ids are non-empty and unique within their file; `created` is
//! RFC 3339; roles, actions and reasons are known names; a policy names a connector and at
//! least one tool; every group member is a user of `users.jsonl`, listed once. Policy and
//! agent scopes may name users and groups that do not exist: such a reference matches nobody.
//!
//! Agents (the optional `agents.jsonl`) and the setting (the optional `settings.json`) are
//! checked as the admin API checks them: agent ids non-empty and unique, aliases non-empty and
//! unique across every agent's id and aliases; a policy's `agents` names registered agents (or
//! is `["*"]`); a `step_up` only on a STEP_UP policy, with at least one requirement; an
//! `expression` that compiles ([`pdp::expression`]).

use crate::format::{
    AgentLine, AuthenticationLine, Expected, GroupLine, PolicyLine, RequestLine, ScopeLine,
    StepUpLine, UserLine, parse_action, parse_reason, parse_role, parse_timestamp,
    parse_unregistered, reason_name,
};
use crate::{Error, Result};
use pdp::{Model, Reason, Timestamp};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A workload read from a directory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Workload {
    pub model: Model,
    /// Empty when the directory has no `requests.jsonl`, as in an identity-provider export.
    pub requests: Vec<RequestLine>,
    /// The optional `approval_flows.jsonl`, user approvers resolved to user ids. Flows are
    /// outside the model: the importer writes them beside it.
    pub flows: Vec<pdp::ApprovalFlow>,
    /// The line of each of `model.policies`, in order: where checks after reading point.
    pub policy_lines: Vec<u64>,
    /// The line of each of `flows`, in order.
    pub flow_lines: Vec<u64>,
}

/// How far reading one file has got, for a progress bar. Reported when a file is opened, about
/// every 256 KiB, and when it is done (then `bytes_read == total_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The file name, such as `users.jsonl`.
    pub file: &'static str,
    /// Lines read so far, blank ones included.
    pub lines_read: u64,
    pub bytes_read: u64,
    /// The file's size when it was opened.
    pub total_bytes: u64,
}

/// Reads `users.jsonl`, `groups.jsonl`, `policies.jsonl` and, when present, `requests.jsonl`
/// from `dir` (`manifest.json` is not read). `now` stamps what the format has no time for:
/// group and policy creation, memberships and locks.
///
/// Users map to [`pdp::User`] with the email as user name and only email, groups to
/// identity-provider-managed [`pdp::Group`]s with one [`pdp::Membership`] per member, policies
/// to [`pdp::Policy`] (a tool list containing `*` covers all tools); see [`crate::format`].
/// Keys the format does not define are ignored, so newer exporters can add fields; see the
/// module docs for what is validated.
pub fn read_dir(
    dir: &Path,
    now: Timestamp,
    progress: &mut dyn FnMut(Progress),
) -> Result<Workload> {
    read(Source::Dir(dir), now, progress)
}

/// Where a workload's files are read from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The files of a directory.
    Dir(&'a Path),
    /// Files already in memory, by file name (`users.jsonl`, …): what a server receives.
    Files(&'a BTreeMap<String, Vec<u8>>),
}

/// Most problems one read reports: it stops reading at the 100th.
pub const MAX_PROBLEMS: usize = 100;

/// [`read_dir`] from any [`Source`]. Every bad line is reported, not only the first (up to
/// [`MAX_PROBLEMS`]): one problem comes back as itself, several as [`Error::Problems`].
pub fn read(
    source: Source<'_>,
    now: Timestamp,
    progress: &mut dyn FnMut(Progress),
) -> Result<Workload> {
    let mut problems = Problems::default();
    let read = read_all(source, now, progress, &mut problems);
    problems.finish(read)
}

/// What [`read_checked`] found.
#[derive(Debug)]
pub struct Checked {
    /// What could be read: the lines without problems (empty after an unreadable file). Only
    /// for further checks when there are problems.
    pub workload: Workload,
    /// Every problem, in the order found: the format's, then the caller's.
    pub problems: Vec<String>,
    /// Reading stopped at [`MAX_PROBLEMS`]: there may be more.
    pub stopped: bool,
}

/// [`read`], then `check` on what could be read (unless reading stopped at [`MAX_PROBLEMS`]),
/// its problems after the format's: so one pass lists the problems of both (at most
/// [`MAX_PROBLEMS`] in all).
pub fn read_checked(
    source: Source<'_>,
    now: Timestamp,
    progress: &mut dyn FnMut(Progress),
    check: impl FnOnce(&Workload) -> Vec<String>,
) -> Checked {
    let mut problems = Problems::default();
    let read = read_all(source, now, progress, &mut problems);
    let (workload, stopped) = match read {
        Ok(workload) => (workload, false),
        Err(Error::Problems { stopped, .. }) => (Workload::default(), stopped),
        Err(error) => {
            problems.list.push(error);
            (Workload::default(), false)
        }
    };
    let mut found: Vec<String> = problems.list.iter().map(ToString::to_string).collect();
    let mut stopped = stopped;
    if !stopped {
        found.extend(check(&workload));
        if found.len() > MAX_PROBLEMS {
            found.truncate(MAX_PROBLEMS);
            stopped = true;
        }
    }
    Checked {
        workload,
        problems: found,
        stopped,
    }
}

fn read_all(
    source: Source<'_>,
    now: Timestamp,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
) -> Result<Workload> {
    let mut model = Model::default();

    // Agents come first: policies name them.
    let agent_ids = match Lines::open(source, "agents.jsonl") {
        Ok(mut lines) => read_agents(&mut lines, now, &mut model, progress, problems)?,
        Err(err) if not_found(&err) => HashSet::new(),
        Err(err) => return Err(err),
    };
    match read_settings(source) {
        Ok(Some(unregistered)) => model.settings.unregistered_agents = unregistered,
        Ok(None) => {}
        Err(err) => problems.note(Err(err))?,
    }

    let mut users = Lines::open(source, "users.jsonl")?;
    let index = read_users(&mut users, now, &mut model, progress, problems)?;

    let mut groups = Lines::open(source, "groups.jsonl")?;
    read_groups(&mut groups, now, &index.ids, &mut model, progress, problems)?;

    // Flows name users and groups; policies name flows.
    let mut flow_lines = Vec::new();
    let flows = match Lines::open(source, FLOWS) {
        Ok(mut lines) => read_flows(
            &mut lines,
            now,
            &index,
            &model,
            progress,
            problems,
            &mut flow_lines,
        )?,
        Err(err) if not_found(&err) => Vec::new(),
        Err(err) => return Err(err),
    };
    drop(index);
    let flow_ids: HashSet<&str> = flows.iter().map(|f| f.id.as_str()).collect();

    let mut policies = Lines::open(source, "policies.jsonl")?;
    let mut policy_lines = Vec::new();
    read_policies(
        &mut policies,
        now,
        &agent_ids,
        &flow_ids,
        &mut model,
        progress,
        problems,
        &mut policy_lines,
    )?;
    drop(flow_ids);

    let requests = match Lines::open(source, "requests.jsonl") {
        Ok(mut lines) => parse_requests(&mut lines, progress)?,
        Err(err) if not_found(&err) => Vec::new(),
        Err(err) => return Err(err),
    };
    Ok(Workload {
        model,
        requests,
        flows,
        policy_lines,
        flow_lines,
    })
}

/// The problems found so far, in the order read.
#[derive(Default)]
struct Problems {
    list: Vec<Error>,
}

impl Problems {
    /// Keeps a line's problem, if it has one, so reading goes on to the next line; fails once
    /// [`MAX_PROBLEMS`] are kept, to stop reading.
    fn note(&mut self, read: Result<()>) -> Result<()> {
        if let Err(err) = read {
            self.list.push(err);
            if self.list.len() >= MAX_PROBLEMS {
                // Only a marker: `finish` returns the list.
                return Err(Error::Problems {
                    problems: Vec::new(),
                    stopped: true,
                });
            }
        }
        Ok(())
    }

    /// The workload if nothing was wrong; else every problem, an error that stopped reading
    /// (a missing file, an unreadable one) last.
    fn finish<T>(mut self, read: Result<T>) -> Result<T> {
        let stopped = match read {
            Ok(value) if self.list.is_empty() => return Ok(value),
            Ok(_) => false,
            Err(Error::Problems { stopped, .. }) => stopped,
            Err(err) => {
                self.list.push(err);
                false
            }
        };
        match self.list.pop() {
            Some(only) if self.list.is_empty() && !stopped => Err(only),
            last => {
                self.list.extend(last);
                Err(Error::Problems {
                    problems: self.list,
                    stopped,
                })
            }
        }
    }
}

fn not_found(err: &Error) -> bool {
    matches!(err, Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// The largest `settings.json` read: it holds one small object.
pub const MAX_SETTINGS_BYTES: u64 = 64 * 1024;

/// `settings.json`'s `unregistered_agents`, or `None` without the file (or the key).
fn read_settings(source: Source<'_>) -> Result<Option<pdp::Unregistered>> {
    use std::io::Read;
    const FILE: &str = "settings.json";
    let text = match source {
        Source::Dir(dir) => {
            let path = dir.join(FILE);
            let read_error = |source| Error::Read {
                path: path.clone(),
                source,
            };
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(source) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(source) => return Err(read_error(source)),
            };
            let mut text = Vec::new();
            file.take(MAX_SETTINGS_BYTES + 1)
                .read_to_end(&mut text)
                .map_err(read_error)?;
            Cow::Owned(text)
        }
        Source::Files(files) => match files.get(FILE) {
            Some(text) => Cow::Borrowed(text.as_slice()),
            None => return Ok(None),
        },
    };
    let field = |line: u64, field: &str, problem: String| Error::Field {
        file: FILE.to_owned(),
        line,
        field: field.to_owned(),
        problem,
    };
    if text.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(Error::Json {
            file: FILE.to_owned(),
            line: 1,
            problem: format!("larger than {MAX_SETTINGS_BYTES} bytes"),
        });
    }
    let text = text.strip_prefix(UTF8_BOM).unwrap_or(&text);
    let value: Value = serde_json::from_slice(text).map_err(|err| Error::Json {
        file: FILE.to_owned(),
        line: err.line() as u64,
        problem: err.to_string(),
    })?;
    let Value::Object(object) = &value else {
        return Err(Error::Json {
            file: FILE.to_owned(),
            line: 1,
            problem: format!("expected an object, found {}", describe(&value)),
        });
    };
    match object.get("unregistered_agents") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => match parse_unregistered(name) {
            Some(value) => Ok(Some(value)),
            None => Err(field(
                1,
                "unregistered_agents",
                format!("unknown value `{name}`, expected ALLOW or DENY"),
            )),
        },
        Some(other) => Err(field(
            1,
            "unregistered_agents",
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// Reads a `requests.jsonl` file on its own. Errors name the file by its file name.
pub fn read_requests(path: &Path) -> Result<Vec<RequestLine>> {
    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut lines = Lines::open_path(path, label, "requests.jsonl")?;
    parse_requests(&mut lines, &mut |_| {})
}

// ---- line reading ---------------------------------------------------------------------------

const PROGRESS_EVERY: u64 = 256 * 1024;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A file read line by line, keeping count for error messages and progress.
struct Lines<'a> {
    /// The name errors use.
    label: String,
    /// The name progress reports use.
    file: &'static str,
    path: std::path::PathBuf,
    reader: Box<dyn BufRead + 'a>,
    buf: Vec<u8>,
    line: u64,
    bytes: u64,
    total_bytes: u64,
    reported_at: u64,
}

impl<'a> Lines<'a> {
    fn open(source: Source<'a>, file: &'static str) -> Result<Lines<'a>> {
        match source {
            Source::Dir(dir) => Lines::open_path(&dir.join(file), file.to_owned(), file),
            Source::Files(files) => match files.get(file) {
                Some(bytes) => Ok(Lines::new(
                    Box::new(bytes.as_slice()),
                    file.into(),
                    file.to_owned(),
                    file,
                    bytes.len() as u64,
                )),
                None => Err(Error::Read {
                    path: file.into(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "not sent"),
                }),
            },
        }
    }

    fn open_path(path: &Path, label: String, file: &'static str) -> Result<Lines<'a>> {
        let read_error = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let handle = File::open(path).map_err(read_error)?;
        let total_bytes = handle.metadata().map_err(read_error)?.len();
        Ok(Lines::new(
            Box::new(BufReader::with_capacity(1 << 20, handle)),
            path.to_owned(),
            label,
            file,
            total_bytes,
        ))
    }

    fn new(
        reader: Box<dyn BufRead + 'a>,
        path: std::path::PathBuf,
        label: String,
        file: &'static str,
        total_bytes: u64,
    ) -> Lines<'a> {
        Lines {
            label,
            file,
            path,
            reader,
            buf: Vec::with_capacity(4096),
            line: 0,
            bytes: 0,
            total_bytes,
            reported_at: 0,
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            file: self.file,
            lines_read: self.line,
            bytes_read: self.bytes,
            total_bytes: self.total_bytes.max(self.bytes),
        }
    }

    /// The next non-blank line, without its line break; `None` at the end of the file.
    fn next(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<Option<Ctx<'_>>> {
        if self.line == 0 && self.bytes == 0 {
            progress(self.progress());
        }
        loop {
            self.buf.clear();
            let read = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|source| Error::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if read == 0 {
                self.total_bytes = self.bytes;
                progress(self.progress());
                return Ok(None);
            }
            self.line += 1;
            self.bytes += read as u64;
            if self.bytes - self.reported_at >= PROGRESS_EVERY {
                self.reported_at = self.bytes;
                progress(self.progress());
            }
            while let Some(b'\n' | b'\r') = self.buf.last() {
                self.buf.pop();
            }
            if self.line == 1 && self.buf.starts_with(UTF8_BOM) {
                // Some exporters start files with a byte-order mark.
                self.buf.drain(..UTF8_BOM.len());
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(Ctx {
                    file: &self.label,
                    line: self.line,
                    text: &self.buf,
                }));
            }
        }
    }
}

/// One line and where it is, for error messages.
struct Ctx<'a> {
    file: &'a str,
    line: u64,
    text: &'a [u8],
}

impl<'a> Ctx<'a> {
    fn error(&self, field: &str, problem: impl Into<String>) -> Error {
        Error::Field {
            file: self.file.to_owned(),
            line: self.line,
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    /// Parses the line into `T`. On failure, finds the first field of `schema` with the wrong
    /// type to name it; the fast path never builds a `serde_json::Value`.
    fn parse<T: Deserialize<'a>>(&self, schema: &[(&str, Ty)]) -> Result<T> {
        let err = match serde_json::from_slice::<T>(self.text) {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let value: Value = match serde_json::from_slice(self.text) {
            Ok(value) => value,
            Err(err) => return Err(self.json_error(&err)),
        };
        let Value::Object(_) = value else {
            return Err(Error::Json {
                file: self.file.to_owned(),
                line: self.line,
                problem: format!("expected an object, found {}", describe(&value)),
            });
        };
        match diagnose(&value, schema, "") {
            Some((field, problem)) => Err(self.error(&field, problem)),
            // Something the schema does not model (such as a key given twice).
            None => Err(self.json_error(&err)),
        }
    }

    fn json_error(&self, err: &serde_json::Error) -> Error {
        let message = err.to_string();
        // serde_json says "at line 1 column N": the line is ours, the column is worth keeping.
        let message = match message.rfind(" at line ") {
            Some(at) => format!("{} at column {}", &message[..at], err.column()),
            None => message,
        };
        Error::Json {
            file: self.file.to_owned(),
            line: self.line,
            problem: message,
        }
    }
}

/// The JSON type a field must have, to name the culprit when typed parsing fails.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    /// A non-negative integer.
    UInt,
    StrList,
    Object(&'static [(&'static str, Ty)]),
    /// Any JSON object.
    AnyObject,
}

const AGENT: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("name", Ty::Str),
    ("vendor", Ty::Str),
    ("aliases", Ty::StrList),
    ("enabled", Ty::Bool),
    ("scope", Ty::Object(SCOPE)),
];
const STEP_UP: &[(&str, Ty)] = &[
    ("acr_values", Ty::StrList),
    ("amr_values", Ty::StrList),
    ("max_age", Ty::UInt),
];
const AUTHENTICATION: &[(&str, Ty)] = &[
    ("acr", Ty::Str),
    ("amr", Ty::StrList),
    ("auth_age_s", Ty::UInt),
];

const USER: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("email", Ty::Str),
    ("name", Ty::Str),
    ("created", Ty::Str),
    ("active", Ty::Bool),
    ("locked", Ty::Bool),
    ("mfa", Ty::Bool),
    ("manager", Ty::Str),
];
const FLOW: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("name", Ty::Str),
    ("description", Ty::Str),
    ("request_ttl_s", Ty::UInt),
    ("grant", Ty::Str),
    ("window_s", Ty::UInt),
    ("any_arguments", Ty::Bool),
];
const GROUP: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("name", Ty::Str),
    ("roles", Ty::StrList),
    ("members", Ty::StrList),
];
const SCOPE: &[(&str, Ty)] = &[
    ("all_users", Ty::Bool),
    ("users", Ty::StrList),
    ("groups", Ty::StrList),
];
const POLICY: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("name", Ty::Str),
    ("connector", Ty::Str),
    ("tools", Ty::StrList),
    ("scope", Ty::Object(SCOPE)),
    ("agents", Ty::StrList),
    ("action", Ty::Str),
    ("step_up", Ty::Object(STEP_UP)),
    ("approval_flow", Ty::Str),
    ("expression", Ty::Str),
    ("enabled", Ty::Bool),
];
const EXPECTED: &[(&str, Ty)] = &[
    ("decision", Ty::Str),
    ("reason", Ty::Str),
    ("policy_id", Ty::Str),
];
const REQUEST: &[(&str, Ty)] = &[
    ("id", Ty::Str),
    ("user", Ty::Str),
    ("agent", Ty::Str),
    ("connector", Ty::Str),
    ("tool", Ty::Str),
    ("authentication", Ty::Object(AUTHENTICATION)),
    ("arguments", Ty::AnyObject),
    ("kind", Ty::Str),
    ("expected", Ty::Object(EXPECTED)),
];

/// The first field of `value` whose (non-null) value has the wrong type.
fn diagnose(value: &Value, schema: &[(&str, Ty)], prefix: &str) -> Option<(String, String)> {
    for &(name, ty) in schema {
        let field = format!("{prefix}{name}");
        let v = match value.get(name) {
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        let problem = match ty {
            Ty::Str if !v.is_string() => format!("expected a string, found {}", describe(v)),
            Ty::Bool if !v.is_boolean() => format!("expected a boolean, found {}", describe(v)),
            Ty::UInt if !v.is_u64() => {
                format!("expected a non-negative integer, found {}", describe(v))
            }
            Ty::AnyObject if !v.is_object() => {
                format!("expected an object, found {}", describe(v))
            }
            Ty::StrList => match v.as_array() {
                None => format!("expected an array of strings, found {}", describe(v)),
                Some(items) => match items.iter().position(|i| !i.is_string()) {
                    Some(at) => {
                        return Some((
                            format!("{field}[{at}]"),
                            format!("expected a string, found {}", describe(&items[at])),
                        ));
                    }
                    None => continue,
                },
            },
            Ty::Object(inner) => {
                if !v.is_object() {
                    format!("expected an object, found {}", describe(v))
                } else if let Some(found) = diagnose(v, inner, &format!("{field}.")) {
                    return Some(found);
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        return Some((field, problem));
    }
    None
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required<T>(ctx: &Ctx<'_>, value: Option<T>, field: &str) -> Result<T> {
    value.ok_or_else(|| ctx.error(field, "missing"))
}

fn required_id(ctx: &Ctx<'_>, value: Option<String>) -> Result<String> {
    let id = required(ctx, value, "id")?;
    if id.is_empty() {
        return Err(ctx.error("id", "empty"));
    }
    Ok(id)
}

fn duplicate(ctx: &Ctx<'_>, id: &str, first_line: u64) -> Error {
    ctx.error(
        "id",
        format!("duplicate id `{id}`, first on line {first_line}"),
    )
}

// ---- agents ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawAgent {
    id: Option<String>,
    name: Option<String>,
    vendor: Option<String>,
    aliases: Option<Vec<String>>,
    enabled: Option<bool>,
    scope: Option<RawScope>,
}

/// Reads `agents.jsonl` into the model; returns the agent ids, which policies may name.
fn read_agents(
    lines: &mut Lines<'_>,
    now: Timestamp,
    model: &mut Model,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
) -> Result<HashSet<String>> {
    // Every id and alias → the line that has it: a request's agent names one agent.
    let mut names: HashMap<String, u64> = HashMap::new();
    let mut ids = HashSet::new();
    while let Some(ctx) = lines.next(progress)? {
        let read = (|| -> Result<()> {
            let raw: RawAgent = ctx.parse(AGENT)?;
            let id = required_id(&ctx, raw.id)?;
            if let Some(&first) = names.get(&id) {
                return Err(ctx.error(
                    "id",
                    format!("`{id}` is already an agent's id or alias, on line {first}"),
                ));
            }
            names.insert(id.clone(), ctx.line);
            let aliases = raw.aliases.unwrap_or_default();
            for (at, alias) in aliases.iter().enumerate() {
                let field = format!("aliases[{at}]");
                if alias.is_empty() {
                    return Err(ctx.error(&field, "empty"));
                }
                if let Some(&first) = names.get(alias) {
                    return Err(ctx.error(
                        &field,
                        format!("`{alias}` is already an agent's id or alias, on line {first}"),
                    ));
                }
                names.insert(alias.clone(), ctx.line);
            }
            let scope = match raw.scope {
                // Like the model's default: an agent without a scope acts for everyone.
                None => ScopeLine {
                    all_users: true,
                    ..ScopeLine::default()
                },
                Some(scope) => ScopeLine {
                    all_users: scope.all_users.unwrap_or(false),
                    users: scope.users.unwrap_or_default(),
                    groups: scope.groups.unwrap_or_default(),
                },
            };
            let line = AgentLine {
                name: raw.name.unwrap_or_else(|| id.clone()),
                id,
                vendor: raw.vendor.unwrap_or_default(),
                aliases,
                enabled: raw.enabled.unwrap_or(true),
                scope,
            };
            ids.insert(line.id.clone());
            model.agents.push(line.to_agent(now));
            Ok(())
        })();
        problems.note(read)?;
    }
    Ok(ids)
}

// ---- users ----------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawUser<'a> {
    id: Option<String>,
    email: Option<String>,
    name: Option<String>,
    /// Borrowed from the line when it has no escapes: it is only parsed.
    #[serde(borrow)]
    created: Option<Cow<'a, str>>,
    active: Option<bool>,
    locked: Option<bool>,
    mfa: Option<bool>,
    manager: Option<String>,
}

/// User id → (index in the model, line), for duplicate checks and group members.
type UserIndex = HashMap<String, (u32, u64)>;

/// The users read, by id and by normalized email: what managers and flows name.
struct Users {
    ids: UserIndex,
    /// Normalized email → (line, index in the model).
    emails: HashMap<String, (u64, u32)>,
}

impl Users {
    /// The id of the user a reference names: an id, else an email (ignoring case).
    fn resolve<'m>(&self, model: &'m Model, reference: &str) -> Option<&'m str> {
        let idx = match self.ids.get(reference) {
            Some(&(idx, _)) => idx,
            None => {
                self.emails
                    .get(pdp::identity::normalize(reference).as_ref())?
                    .1
            }
        };
        model.users.get(idx as usize).map(|u| u.id.as_str())
    }
}

fn read_users(
    lines: &mut Lines<'_>,
    now: Timestamp,
    model: &mut Model,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
) -> Result<Users> {
    let mut index = UserIndex::new();
    // Normalized email → the line that has it: an email is the imported user's user name, so
    // it must name one user (see `pdp::identity`).
    let mut emails: HashMap<String, (u64, u32)> = HashMap::new();
    // Managers may be later in the file: (index in the model, line, reference), resolved at
    // the end.
    let mut managers: Vec<(u32, u64, String)> = Vec::new();
    while let Some(ctx) = lines.next(progress)? {
        let read = (|| -> Result<()> {
            let raw: RawUser = ctx.parse(USER)?;
            let id = required_id(&ctx, raw.id)?;
            let Ok(idx) = u32::try_from(model.users.len()) else {
                return Err(ctx.error("id", "too many users"));
            };
            match index.entry(id.clone()) {
                Entry::Occupied(first) => return Err(duplicate(&ctx, &id, first.get().1)),
                Entry::Vacant(slot) => {
                    slot.insert((idx, ctx.line));
                }
            }
            let email = required(&ctx, raw.email, "email")?;
            match pdp::identity::check_email(&email) {
                Ok(()) => {}
                // Named: it passed the identifier checks, so it is short and visible.
                Err(problem @ pdp::identity::Invalid::NotAnEmail) => {
                    return Err(ctx.error("email", format!("`{email}` {problem}")));
                }
                Err(problem) => return Err(ctx.error("email", problem.to_string())),
            }
            match emails.entry(pdp::identity::normalize(&email).into_owned()) {
                Entry::Occupied(first) => {
                    return Err(ctx.error(
                        "email",
                        format!(
                            "`{email}` is already the email of the user on line {}",
                            first.get().0
                        ),
                    ));
                }
                Entry::Vacant(slot) => {
                    slot.insert((ctx.line, idx));
                }
            }
            if let Some(manager) = raw.manager {
                if manager.is_empty() {
                    return Err(ctx.error("manager", "empty"));
                }
                managers.push((idx, ctx.line, manager));
            }
            let name = required(&ctx, raw.name, "name")?;
            let created = required(&ctx, raw.created, "created")?;
            let Some(created) = parse_timestamp(&created) else {
                return Err(ctx.error("created", format!("invalid RFC 3339 timestamp `{created}`")));
            };
            let active = required(&ctx, raw.active, "active")?;
            let locked = required(&ctx, raw.locked, "locked")?;
            let line = UserLine {
                id,
                email,
                name,
                created,
                active,
                locked,
                mfa: raw.mfa,
                manager: None,
            };
            model.users.push(line.into_user(now));
            Ok(())
        })();
        if read.is_err() && index.len() > model.users.len() {
            // The line's id was taken before it failed: a stand-in keeps every index in
            // `index` and `emails` pointing at its own user (a model with problems is never
            // written, only read for further messages).
            model.users.push(pdp::User::default());
        }
        problems.note(read)?;
    }
    let users = Users { ids: index, emails };
    for (idx, line, reference) in managers {
        let error = |problem: String| Error::Field {
            file: lines.label.clone(),
            line,
            field: "manager".to_owned(),
            problem,
        };
        let Some(id) = users.resolve(model, &reference) else {
            problems.note(Err(error(format!(
                "unknown user `{reference}`, not an id or email in users.jsonl"
            ))))?;
            continue;
        };
        let id = id.to_owned();
        let Some(user) = model.users.get_mut(idx as usize) else {
            continue;
        };
        if user.id == id {
            problems.note(Err(error("a user cannot be their own manager".to_owned())))?;
            continue;
        }
        user.manager = Some(id);
    }
    Ok(users)
}

// ---- approval flows -------------------------------------------------------------------------

/// The optional file of approval flows.
const FLOWS: &str = "approval_flows.jsonl";

#[derive(Deserialize)]
struct RawFlow {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    steps: Option<Vec<RawFlowStep>>,
    request_ttl_s: Option<u64>,
    grant: Option<String>,
    window_s: Option<u64>,
    any_arguments: Option<bool>,
}

#[derive(Deserialize)]
struct RawFlowStep {
    approvers: Option<Vec<String>>,
    min_approvals: Option<u32>,
    timeout_s: Option<u64>,
}

/// Reads `approval_flows.jsonl`: ids unique (and not the built-in flow's), a name, at least
/// one step, each with approvers that parse, users of `users.jsonl` (by id or email, kept as
/// the id) and groups of `groups.jsonl`, and `min_approvals`; `grant` `once` (the default) or
/// `window` with `window_s`. Bounds (lengths, counts, durations, whether a step's approvers
/// can give `min_approvals`) are the importer's to check, as the admin API checks them.
fn read_flows(
    lines: &mut Lines<'_>,
    now: Timestamp,
    users: &Users,
    model: &Model,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
    lines_read: &mut Vec<u64>,
) -> Result<Vec<pdp::ApprovalFlow>> {
    let groups: HashSet<&str> = model.groups.iter().map(|g| g.id.as_str()).collect();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut flows = Vec::new();
    while let Some(ctx) = lines.next(progress)? {
        let read = (|| -> Result<()> {
            let raw: RawFlow = ctx.parse(FLOW)?;
            let id = required_id(&ctx, raw.id)?;
            if id == pdp::approval::BUILTIN_FLOW_ID {
                return Err(ctx.error("id", format!("`{id}` is the built-in flow's id")));
            }
            if let Some(&first) = seen.get(&id) {
                return Err(duplicate(&ctx, &id, first));
            }
            let name = required(&ctx, raw.name, "name")?;
            let raw_steps = required(&ctx, raw.steps, "steps")?;
            if raw_steps.is_empty() {
                return Err(ctx.error("steps", "empty, expected at least one step"));
            }
            let mut steps = Vec::with_capacity(raw_steps.len());
            for (i, step) in raw_steps.into_iter().enumerate() {
                let field = format!("steps[{i}]");
                let approvers = required(&ctx, step.approvers, &format!("{field}.approvers"))?;
                if approvers.is_empty() {
                    return Err(ctx.error(
                        &format!("{field}.approvers"),
                        "empty, expected at least one approver",
                    ));
                }
                let mut parsed = Vec::with_capacity(approvers.len());
                for (j, text) in approvers.iter().enumerate() {
                    let at = format!("{field}.approvers[{j}]");
                    let approver = match crate::format::parse_approver(text) {
                        Some(pdp::Approver::User(reference)) => {
                            match users.resolve(model, &reference) {
                                Some(id) => pdp::Approver::User(id.to_owned()),
                                None => {
                                    return Err(ctx.error(
                                        &at,
                                        format!(
                                            "unknown user `{reference}`, not an id or email in \
                                             users.jsonl"
                                        ),
                                    ));
                                }
                            }
                        }
                        Some(pdp::Approver::Group(group)) if !groups.contains(group.as_str()) => {
                            return Err(ctx.error(
                                &at,
                                format!("unknown group `{group}`, not an id in groups.jsonl"),
                            ));
                        }
                        Some(approver) => approver,
                        None => {
                            return Err(ctx.error(
                                &at,
                                format!(
                                    "`{text}` is not user:<id or email>, group:<id>, manager or \
                                     admins"
                                ),
                            ));
                        }
                    };
                    parsed.push(approver);
                }
                steps.push(pdp::ApprovalStep {
                    approvers: parsed,
                    min_approvals: required(
                        &ctx,
                        step.min_approvals,
                        &format!("{field}.min_approvals"),
                    )?,
                    timeout_secs: step.timeout_s,
                });
            }
            let grant = match (raw.grant.as_deref().unwrap_or("once"), raw.window_s) {
                ("once", None) => pdp::GrantMode::Once,
                ("window", Some(seconds)) => pdp::GrantMode::Window { seconds },
                ("window", None) => return Err(ctx.error("window_s", "missing, `window` needs it")),
                ("once", Some(_)) => {
                    return Err(ctx.error("window_s", "only a `window` grant has a window"));
                }
                (other, _) => {
                    return Err(ctx.error(
                        "grant",
                        format!("unknown grant `{other}`, expected once or window"),
                    ));
                }
            };
            seen.insert(id.clone(), ctx.line);
            lines_read.push(ctx.line);
            flows.push(pdp::ApprovalFlow {
                id,
                name,
                description: raw.description.unwrap_or_default(),
                steps,
                request_ttl_secs: raw
                    .request_ttl_s
                    .unwrap_or(pdp::approval::DEFAULT_REQUEST_TTL_SECS),
                grant,
                any_arguments: raw.any_arguments.unwrap_or(false),
                created_at: now,
                updated_at: now,
            });
            Ok(())
        })();
        problems.note(read)?;
    }
    Ok(flows)
}

// ---- groups ---------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawGroup {
    id: Option<String>,
    name: Option<String>,
    roles: Option<Vec<String>>,
    members: Option<Vec<String>>,
}

fn read_groups(
    lines: &mut Lines<'_>,
    now: Timestamp,
    users: &UserIndex,
    model: &mut Model,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
) -> Result<()> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    // The last group (by line) each user was seen in: a member listed twice finds its own line.
    let mut last_seen_in: Vec<u64> = vec![0; model.users.len()];
    while let Some(ctx) = lines.next(progress)? {
        let read = (|| -> Result<()> {
            let raw: RawGroup = ctx.parse(GROUP)?;
            let id = required_id(&ctx, raw.id)?;
            if let Some(&first) = seen.get(&id) {
                return Err(duplicate(&ctx, &id, first));
            }
            let name = required(&ctx, raw.name, "name")?;
            let mut roles = Vec::new();
            for role in required(&ctx, raw.roles, "roles")? {
                match parse_role(&role) {
                    Some(role) => roles.push(role),
                    None => {
                        return Err(ctx.error(
                            "roles",
                            format!("unknown role `{role}`, expected admin or read_only"),
                        ));
                    }
                }
            }
            let members = required(&ctx, raw.members, "members")?;
            for member in &members {
                let Some(&(idx, _)) = users.get(member) else {
                    return Err(ctx.error("members", format!("unknown user `{member}`")));
                };
                let last = &mut last_seen_in[idx as usize];
                if *last == ctx.line {
                    return Err(ctx.error("members", format!("duplicate member `{member}`")));
                }
                *last = ctx.line;
            }
            seen.insert(id.clone(), ctx.line);
            let line = GroupLine {
                id,
                name,
                roles,
                members: Vec::new(),
            };
            model.groups.push(line.to_group(now));
            model.memberships.reserve(members.len());
            for user_id in members {
                model.memberships.push(pdp::Membership {
                    group_id: line.id.clone(),
                    user_id,
                    joined_at: now,
                    source: pdp::MembershipSource::Idp,
                });
            }
            Ok(())
        })();
        problems.note(read)?;
    }
    Ok(())
}

// ---- policies -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawScope {
    all_users: Option<bool>,
    users: Option<Vec<String>>,
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawPolicy {
    id: Option<String>,
    name: Option<String>,
    connector: Option<String>,
    tools: Option<Vec<String>>,
    scope: Option<RawScope>,
    agents: Option<Vec<String>>,
    action: Option<String>,
    step_up: Option<RawStepUp>,
    approval_flow: Option<String>,
    expression: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
struct RawStepUp {
    acr_values: Option<Vec<String>>,
    amr_values: Option<Vec<String>>,
    max_age: Option<u64>,
}

#[allow(clippy::too_many_arguments)] // the reader's state, passed down as the others are
fn read_policies(
    lines: &mut Lines<'_>,
    now: Timestamp,
    agent_ids: &HashSet<String>,
    flow_ids: &HashSet<&str>,
    model: &mut Model,
    progress: &mut dyn FnMut(Progress),
    problems: &mut Problems,
    lines_read: &mut Vec<u64>,
) -> Result<()> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some(ctx) = lines.next(progress)? {
        let read = (|| -> Result<()> {
            let raw: RawPolicy = ctx.parse(POLICY)?;
            let id = required_id(&ctx, raw.id)?;
            if let Some(&first) = seen.get(&id) {
                return Err(duplicate(&ctx, &id, first));
            }
            let name = required(&ctx, raw.name, "name")?;
            let connector = required(&ctx, raw.connector, "connector")?;
            if connector.is_empty() {
                return Err(ctx.error("connector", "empty"));
            }
            let tools = required(&ctx, raw.tools, "tools")?;
            if tools.is_empty() {
                return Err(ctx.error("tools", "empty, expected tool names or `*`"));
            }
            if let Some(at) = tools.iter().position(String::is_empty) {
                return Err(ctx.error(&format!("tools[{at}]"), "empty"));
            }
            let scope = required(&ctx, raw.scope, "scope")?;
            let scope = ScopeLine {
                all_users: required(&ctx, scope.all_users, "scope.all_users")?,
                users: required(&ctx, scope.users, "scope.users")?,
                groups: required(&ctx, scope.groups, "scope.groups")?,
            };
            if let Some(agents) = &raw.agents {
                policy_agents(&ctx, agents, agent_ids)?;
            }
            let action = action(&ctx, raw.action, "action")?;
            let step_up = match raw.step_up {
                None => None,
                Some(_) if action != pdp::Action::StepUp => {
                    return Err(ctx.error(
                        "step_up",
                        format!(
                            "only a STEP_UP policy has a step-up requirement, this one is {}",
                            crate::format::action_name(action)
                        ),
                    ));
                }
                Some(raw) => {
                    let step_up = StepUpLine {
                        acr_values: raw.acr_values.unwrap_or_default(),
                        amr_values: raw.amr_values.unwrap_or_default(),
                        max_age: raw.max_age,
                    };
                    if pdp::StepUp::from(step_up.clone()).is_empty() {
                        return Err(ctx.error(
                            "step_up",
                            "empty, expected at least one of acr_values, amr_values and max_age",
                        ));
                    }
                    for (name, values) in [
                        ("acr_values", &step_up.acr_values),
                        ("amr_values", &step_up.amr_values),
                    ] {
                        if let Some(at) = values.iter().position(String::is_empty) {
                            return Err(ctx.error(&format!("step_up.{name}[{at}]"), "empty"));
                        }
                    }
                    Some(step_up)
                }
            };
            if let Some(source) = &raw.expression
                && let Err(err) = pdp::expression::Expression::compile(source)
            {
                return Err(ctx.error("expression", err.to_string()));
            }
            if let Some(flow) = &raw.approval_flow {
                if action != pdp::Action::RequireApproval {
                    return Err(ctx.error(
                        "approval_flow",
                        format!(
                            "only a REQUIRE_APPROVAL policy names an approval flow, this one is {}",
                            crate::format::action_name(action)
                        ),
                    ));
                }
                if flow != pdp::approval::BUILTIN_FLOW_ID && !flow_ids.contains(flow.as_str()) {
                    return Err(ctx.error(
                        "approval_flow",
                        format!("unknown flow `{flow}`, not an id in {FLOWS} (nor builtin-admins)"),
                    ));
                }
            }
            let enabled = required(&ctx, raw.enabled, "enabled")?;
            seen.insert(id.clone(), ctx.line);
            let line = PolicyLine {
                id,
                name,
                connector,
                tools,
                scope,
                agents: raw.agents,
                action,
                step_up,
                approval_flow: raw.approval_flow,
                expression: raw.expression,
                enabled,
            };
            lines_read.push(ctx.line);
            model.policies.push(line.into_policy(now));
            Ok(())
        })();
        problems.note(read)?;
    }
    Ok(())
}

/// A policy's `agents`: `["*"]` alone, or registered agent ids, each once.
fn policy_agents(ctx: &Ctx<'_>, agents: &[String], agent_ids: &HashSet<String>) -> Result<()> {
    if agents.is_empty() {
        return Err(ctx.error("agents", "empty, expected agent ids or `*`"));
    }
    if agents.iter().any(|a| a == "*") {
        if agents.len() > 1 {
            return Err(ctx.error("agents", "`*` stands for every agent and must be alone"));
        }
        return Ok(());
    }
    for (at, agent) in agents.iter().enumerate() {
        let field = format!("agents[{at}]");
        if !agent_ids.contains(agent) {
            return Err(ctx.error(
                &field,
                format!("unknown agent `{agent}`, not an id in agents.jsonl"),
            ));
        }
        if agents[..at].contains(agent) {
            return Err(ctx.error(&field, format!("duplicate agent `{agent}`")));
        }
    }
    Ok(())
}

fn action(ctx: &Ctx<'_>, value: Option<String>, field: &str) -> Result<pdp::Action> {
    let name = required(ctx, value, field)?;
    parse_action(&name).ok_or_else(|| {
        ctx.error(
            field,
            format!("unknown action `{name}`, expected ALLOW, STEP_UP, REQUIRE_APPROVAL or DENY"),
        )
    })
}

// ---- requests -------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawExpected {
    decision: Option<String>,
    reason: Option<String>,
    policy_id: Option<String>,
}

#[derive(Deserialize)]
struct RawRequest {
    id: Option<String>,
    user: Option<String>,
    agent: Option<String>,
    connector: Option<String>,
    tool: Option<String>,
    authentication: Option<RawAuthentication>,
    arguments: Option<pdp::Arguments>,
    kind: Option<String>,
    expected: Option<RawExpected>,
}

#[derive(Deserialize)]
struct RawAuthentication {
    acr: Option<String>,
    amr: Option<Vec<String>>,
    auth_age_s: Option<u64>,
}

fn parse_requests(
    lines: &mut Lines<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<RequestLine>> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut requests = Vec::new();
    while let Some(ctx) = lines.next(progress)? {
        let raw: RawRequest = ctx.parse(REQUEST)?;
        let id = required_id(&ctx, raw.id)?;
        if let Some(&first) = seen.get(&id) {
            return Err(duplicate(&ctx, &id, first));
        }
        let user = required(&ctx, raw.user, "user")?;
        let agent = required(&ctx, raw.agent, "agent")?;
        let connector = required(&ctx, raw.connector, "connector")?;
        let tool = required(&ctx, raw.tool, "tool")?;
        // A token may lack any of the claims: each part is optional.
        let authentication = raw.authentication.map(|a| AuthenticationLine {
            acr: a.acr.unwrap_or_default(),
            amr: a.amr.unwrap_or_default(),
            auth_age_s: a.auth_age_s,
        });
        let kind = required(&ctx, raw.kind, "kind")?;
        let expected = required(&ctx, raw.expected, "expected")?;
        let decision = action(&ctx, expected.decision, "expected.decision")?;
        let reason = required(&ctx, expected.reason, "expected.reason")?;
        let Some(reason) = parse_reason(&reason) else {
            return Err(ctx.error(
                "expected.reason",
                format!(
                    "unknown reason `{reason}`, expected POLICY, STEP_UP_MET, \
                     NO_MATCHING_POLICY, USER_LOCKED, USER_INACTIVE, UNKNOWN_USER, \
                     AMBIGUOUS_USER, UNKNOWN_AGENT, AGENT_DISABLED or AGENT_NOT_ALLOWED"
                ),
            ));
        };
        let policy_id = expected.policy_id;
        if matches!(reason, Reason::Policy | Reason::StepUpMet) {
            let name = reason_name(reason);
            if policy_id.is_none() {
                return Err(ctx.error(
                    "expected.policy_id",
                    format!("missing, reason {name} needs it"),
                ));
            }
            if reason == Reason::StepUpMet && decision != pdp::Action::Allow {
                return Err(ctx.error(
                    "expected.decision",
                    "must be ALLOW when the reason is `STEP_UP_MET`",
                ));
            }
        } else {
            let reason = reason_name(reason);
            if policy_id.is_some() {
                return Err(ctx.error(
                    "expected.policy_id",
                    format!("must be null when the reason is `{reason}`"),
                ));
            }
            if decision != pdp::Action::Deny {
                return Err(ctx.error(
                    "expected.decision",
                    format!("must be DENY when the reason is `{reason}`"),
                ));
            }
        }
        seen.insert(id.clone(), ctx.line);
        requests.push(RequestLine {
            id,
            user,
            agent,
            connector,
            tool,
            authentication,
            arguments: raw.arguments,
            kind,
            expected: Expected {
                decision,
                reason,
                policy_id,
            },
        });
    }
    Ok(requests)
}
