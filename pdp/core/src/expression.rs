//! Conditions written in CEL (the Common Expression Language) over a request: compiled when a
//! policy is written, evaluated at decision time for the policies that have one.
//!
//! What an expression sees:
//! - `request.attributes` (map of strings), `request.arguments` (the tool call's arguments,
//!   JSON; an empty map when the request has none), `request.agent`, `request.connector`,
//!   `request.tool`;
//! - `user.id`, `user.email`, `user.groups` (group ids), `user.mfa` (bool, false when unknown);
//! - `now` (a timestamp);
//! - besides CEL's standard functions and macros, `inCidr(ip, "10.0.0.0/8")` (IPv4 and IPv6).
//!
//! The interpreter is the `cel` crate. What bounds an expression's cost:
//! - at compile time (here): the source is at most [`MAX_SOURCE_LEN`] bytes; brackets nest at
//!   most [`MAX_NESTING`] deep and there are at most [`MAX_NESTING`] conditionals (`?:`), checked
//!   on the text before the parser runs, because the parser and the interpreter recurse; the
//!   parsed tree is at most [`MAX_DEPTH`] deep; comprehensions (`all`, `exists`, `map`,
//!   `filter`, ...) nest at most [`MAX_COMPREHENSION_NESTING`] deep; only `request`, `user` and
//!   `now` (and their known fields) may be named.
//! - at evaluation: the arguments an expression reads are converted with at most
//!   [`MAX_ARGUMENT_VALUES`] values and [`MAX_ARGUMENT_BYTES`] bytes of strings and keys, else
//!   the evaluation fails. CEL itself has no loops other than comprehensions over finite lists
//!   and no string repetition, so with the bounds above the work is at most polynomial, of
//!   degree [`MAX_COMPREHENSION_NESTING`], in the size of the arguments. The crate does not
//!   bound the size of a value it builds (`s + s` inside a comprehension builds
//!   `|list| × |s|` bytes): the bounds on the arguments are what bounds that.
//!
//! A missing attribute or argument (`request.arguments.repo` when the call has no `repo`) is an
//! evaluation error; `has(request.arguments.repo)` tests for it.

use std::sync::{Arc, LazyLock};

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::{Context, Env, Program, Value};

use crate::decide::Request;
use crate::model::Mfa;

/// The longest expression accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;
/// How deep brackets (`(`, `[`, `{`) may nest, and how many conditionals (`?:`) an expression
/// may have.
pub const MAX_NESTING: usize = 32;
/// How deep the parsed expression may be (`1 + 2 + 3 ...` is as deep as it is long; the
/// parser balances `&&` and `||` chains). The interpreter recurses once per level, with large
/// frames in a debug build (some 37 KiB): 32 levels fit a server worker's 2 MiB stack.
pub const MAX_DEPTH: usize = 32;
/// The stack the parser runs on: enough for the deepest chain [`MAX_SOURCE_LEN`] bytes can
/// write, even in a debug build (virtual memory: only what is used is committed).
const COMPILE_STACK: usize = 256 << 20;
/// How deep comprehensions (`all`, `exists`, `exists_one`, `map`, `filter`) may nest.
pub const MAX_COMPREHENSION_NESTING: usize = 2;
/// The most values (each scalar, list and map counts one) of the arguments an evaluation
/// converts.
pub const MAX_ARGUMENT_VALUES: usize = 10_000;
/// The most bytes of strings and keys of the arguments an evaluation converts.
pub const MAX_ARGUMENT_BYTES: usize = 1 << 20;

/// The standard environment, built once: building it per evaluation would cost more than the
/// evaluation.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled condition. Cloning it shares the compiled program.
#[derive(Clone)]
pub struct Expression {
    source: Box<str>,
    /// Shared so that cloning a snapshot's policies does not re-parse them.
    program: Arc<Program>,
    /// The attribute keys the expression reads: `request.attributes` is built from these only,
    /// since [`crate::model::Attributes`] can be read by key but not listed.
    attribute_keys: Box<[Box<str>]>,
    /// The argument keys the expression reads, or `None` when it reads the arguments as a whole
    /// (`size(request.arguments)`, a computed key): then every argument is converted.
    argument_keys: Option<Box<[Box<str>]>>,
    /// The fields of `request` it reads (bits by index in [`REQUEST_FIELDS`]): only those are
    /// built for an evaluation.
    request_fields: u8,
    reads_arguments: bool,
    reads_user: bool,
    reads_now: bool,
    /// Whether it calls `inCidr`: registering it costs every evaluation an allocation.
    calls_in_cidr: bool,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expression")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Expression {}

/// Why an expression does not compile, and where (1-based line and column, in characters; 0
/// when the error is about the expression as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct CompileError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl CompileError {
    fn whole(message: String) -> CompileError {
        CompileError {
            message,
            line: 0,
            column: 0,
        }
    }

    fn describe(&self) -> String {
        if self.line == 0 {
            self.message.clone()
        } else {
            format!(
                "line {}, column {}: {}",
                self.line, self.column, self.message
            )
        }
    }
}

/// What an expression is evaluated over.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub request: &'a Request<'a>,
    pub user: UserFacts<'a>,
}

/// The user a request resolved to, as conditions see them.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub groups: &'a [&'a str],
    pub mfa: Mfa,
}

const REQUEST_FIELDS: &[&str] = &["attributes", "arguments", "agent", "connector", "tool"];
const USER_FIELDS: &[&str] = &["id", "email", "groups", "mfa"];
/// Names CEL resolves itself: the type names (`type(x) == string`).
const TYPE_NAMES: &[&str] = &[
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
    "duration",
    "dyn",
];

impl Expression {
    /// Compiles `source`, or says why (with the position) it cannot be.
    pub fn compile(source: &str) -> Result<Expression, CompileError> {
        if source.len() > MAX_SOURCE_LEN {
            return Err(CompileError::whole(format!(
                "the condition is {} bytes long; the limit is {MAX_SOURCE_LEN}",
                source.len()
            )));
        }
        if source.trim().is_empty() {
            return Err(CompileError::whole("the condition is empty".into()));
        }
        check_nesting(source)?;
        // The parser recurses once per link of a chain (`a.b.c…`, `!!…`, `1 + 1 + …`), which
        // the bracket count does not see: it runs on a thread of its own with a stack that the
        // longest source cannot exhaust, not on the caller's (a server's worker has 2 MiB).
        // Policies are written rarely; a thread per compile costs tens of microseconds.
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cel-compile".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || Expression::compile_here(source))
                .map_err(|e| CompileError::whole(format!("cannot compile now: {e}")))?
                .join()
                .map_err(|_| CompileError::whole("the condition could not be compiled".into()))?
        })
    }

    /// Parses and checks `source`, which is short and shallow enough to parse.
    fn compile_here(source: &str) -> Result<Expression, CompileError> {
        let program = ENV.compile(source).map_err(|errors| {
            let first = errors.errors.first();
            CompileError {
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
                line: first.map_or(0, |e| usize::try_from(e.pos.0).unwrap_or(0)),
                column: first.map_or(0, |e| usize::try_from(e.pos.1).unwrap_or(0)),
            }
        })?;
        let mut walk = Walk {
            source,
            program: &program,
            bound: Vec::new(),
            comprehensions: 0,
            attribute_keys: Vec::new(),
            argument_keys: Some(Vec::new()),
            request_fields: 0,
            reads_arguments: false,
            reads_user: false,
            reads_now: false,
            calls_in_cidr: false,
        };
        walk.expr(program.expression(), 0)?;
        let boxed = |keys: Vec<String>| keys.into_iter().map(String::into_boxed_str).collect();
        Ok(Expression {
            source: source.into(),
            attribute_keys: boxed(walk.attribute_keys),
            argument_keys: walk.argument_keys.map(boxed),
            request_fields: walk.request_fields,
            reads_arguments: walk.reads_arguments,
            reads_user: walk.reads_user,
            reads_now: walk.reads_now,
            calls_in_cidr: walk.calls_in_cidr,
            program: Arc::new(program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition: `Ok(true)` when it holds; an error (or a non-boolean result)
    /// says why it could not be decided, and the policy then does not apply.
    pub fn evaluate(&self, input: &Input<'_>) -> Result<bool, String> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        if self.calls_in_cidr {
            context
                .add_function("inCidr", in_cidr)
                .map_err(|e| e.to_string())?;
        }
        if self.request_fields != 0 {
            context.add_variable_from_value("request", self.request_value(input.request)?);
        }
        if self.reads_user {
            context.add_variable_from_value("user", user_value(&input.user));
        }
        if self.reads_now {
            let now = chrono::DateTime::from_timestamp_millis(input.request.context.now.0)
                .ok_or("the request's time is out of range")?;
            context.add_variable_from_value("now", Value::Timestamp(now.fixed_offset()));
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(holds)) => Ok(holds),
            Ok(other) => Err(format!(
                "the condition is a {}, not a bool",
                other.type_of()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether the expression reads `request.arguments`: a listing of allowed tools, which
    /// knows no arguments, shows such a policy's tools as conditional.
    pub fn reads_arguments(&self) -> bool {
        self.reads_arguments
    }

    fn request_value(&self, request: &Request<'_>) -> Result<Value, String> {
        let attributes: std::collections::HashMap<String, Value> = self
            .attribute_keys
            .iter()
            .filter_map(|key| {
                request
                    .attributes
                    .get(key)
                    .map(|value| (key.to_string(), Value::from(value)))
            })
            .collect();
        let arguments = match (self.reads_arguments, request.context.arguments) {
            (true, Some(arguments)) => {
                let mut budget = Budget {
                    values: MAX_ARGUMENT_VALUES,
                    bytes: MAX_ARGUMENT_BYTES,
                };
                let mut map = std::collections::HashMap::new();
                match &self.argument_keys {
                    Some(keys) => {
                        for key in keys {
                            if let Some(value) = arguments.get(&**key) {
                                map.insert(key.to_string(), budget.convert(value)?);
                            }
                        }
                    }
                    None => {
                        for (key, value) in arguments {
                            budget.take(1, key.len())?;
                            map.insert(key.clone(), budget.convert(value)?);
                        }
                    }
                }
                map
            }
            _ => std::collections::HashMap::new(),
        };
        let mut fields: std::collections::HashMap<&str, Value> = std::collections::HashMap::new();
        let mut attributes = Some(attributes);
        let mut arguments = Some(arguments);
        for (i, field) in REQUEST_FIELDS.iter().enumerate() {
            if self.request_fields & (1 << i) == 0 {
                continue;
            }
            let value = match *field {
                "attributes" => Value::from(attributes.take().unwrap_or_default()),
                "arguments" => Value::from(arguments.take().unwrap_or_default()),
                "agent" => Value::from(request.agent),
                "connector" => Value::from(request.connector),
                _ => Value::from(request.tool),
            };
            fields.insert(field, value);
        }
        Ok(Value::from(fields))
    }
}

fn user_value(user: &UserFacts<'_>) -> Value {
    let groups: Vec<Value> = user.groups.iter().map(|g| Value::from(*g)).collect();
    let fields: std::collections::HashMap<&str, Value> = [
        ("id", Value::from(user.id)),
        ("email", Value::from(user.email)),
        ("groups", Value::from(groups)),
        ("mfa", Value::Bool(user.mfa == Mfa::Enabled)),
    ]
    .into();
    Value::from(fields)
}

/// `inCidr(ip, cidr)`: whether the address `ip` is in the range `cidr` (`10.0.0.0/8`,
/// `2001:db8::/32`; a bare address is a range of one). An address that does not parse is false,
/// a range that does not parse an error (it is the policy's mistake, not the request's).
fn in_cidr(ip: Arc<String>, cidr: Arc<String>) -> Result<bool, cel::ExecutionError> {
    let range = Cidr::parse(&cidr).ok_or_else(|| {
        cel::ExecutionError::function_error("inCidr", format!("not a CIDR range: {cidr}"))
    })?;
    Ok(ip
        .trim()
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| range.contains(ip)))
}

struct Cidr {
    network: u128,
    prefix: u32,
    v4: bool,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let (bits, v4, width) = match address.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
            std::net::IpAddr::V6(a) => (u128::from(a), false, 128),
        };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u32>().ok().filter(|p| *p <= width)?
            }
            Some(_) => return None,
            None => width,
        };
        Some(Cidr {
            network: bits & mask(prefix, width),
            prefix,
            v4,
        })
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is the IPv4 address it maps.
        let ip = match ip {
            std::net::IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        let (bits, v4, width) = match ip {
            std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
            std::net::IpAddr::V6(a) => (u128::from(a), false, 128),
        };
        v4 == self.v4 && bits & mask(self.prefix, width) == self.network
    }
}

/// The network mask of a `prefix`-bit prefix of a `width`-bit address.
fn mask(prefix: u32, width: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (128 - prefix)) >> (128 - width)
    }
}

/// What converting arguments may still use.
struct Budget {
    values: usize,
    bytes: usize,
}

impl Budget {
    fn take(&mut self, values: usize, bytes: usize) -> Result<(), String> {
        match (
            self.values.checked_sub(values),
            self.bytes.checked_sub(bytes),
        ) {
            (Some(v), Some(b)) => {
                self.values = v;
                self.bytes = b;
                Ok(())
            }
            _ => Err(format!(
                "the arguments are too large for a condition (limits: {MAX_ARGUMENT_VALUES} \
                 values, {MAX_ARGUMENT_BYTES} bytes)"
            )),
        }
    }

    /// Converts a JSON value to CEL. JSON numbers that are integers become `int` (or `uint`
    /// above `i64`), others `double`, so that `size(x) <= 10` and `x.count < 3` read naturally.
    /// The recursion is bounded by the JSON parser's own depth limit (128 for serde_json) and
    /// by the budget.
    fn convert(&mut self, value: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as Json;
        Ok(match value {
            Json::Null => {
                self.take(1, 0)?;
                Value::Null
            }
            Json::Bool(b) => {
                self.take(1, 0)?;
                Value::Bool(*b)
            }
            Json::Number(n) => {
                self.take(1, 0)?;
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Value::UInt(u)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::String(s) => {
                self.take(1, s.len())?;
                Value::from(s.as_str())
            }
            Json::Array(items) => {
                self.take(1, 0)?;
                let items = items
                    .iter()
                    .map(|item| self.convert(item))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::List(items.into())
            }
            Json::Object(entries) => {
                self.take(1, 0)?;
                let mut map = std::collections::HashMap::with_capacity(entries.len());
                for (key, value) in entries {
                    self.take(0, key.len())?;
                    map.insert(key.clone(), self.convert(value)?);
                }
                Value::from(map)
            }
        })
    }
}

/// Refuses, before parsing, text whose brackets nest deeper than [`MAX_NESTING`] or which has
/// more than [`MAX_NESTING`] conditionals: the parser recurses on both, and deep enough input
/// would overflow the stack. String literals (`'…'`, `"…"`, triple-quoted, raw) are skipped.
fn check_nesting(source: &str) -> Result<(), CompileError> {
    let chars: Vec<char> = source.chars().collect();
    let (mut line, mut column) = (1, 0);
    let (mut depth, mut conditionals) = (0usize, 0usize);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            column = 0;
        } else {
            column += 1;
        }
        match c {
            '\'' | '"' => {
                let raw = i > 0 && matches!(chars[i - 1], 'r' | 'R');
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                let quote_len = if triple { 3 } else { 1 };
                let mut j = i + quote_len;
                loop {
                    match chars.get(j) {
                        // Unterminated: the parser says so, with the position.
                        None => return Ok(()),
                        Some('\\') if !raw => j += 2,
                        Some(&q)
                            if q == c
                                && (!triple
                                    || (chars.get(j + 1) == Some(&c)
                                        && chars.get(j + 2) == Some(&c))) =>
                        {
                            j += quote_len;
                            break;
                        }
                        Some('\n') => {
                            line += 1;
                            column = 0;
                            j += 1;
                        }
                        Some(_) => {
                            column += 1;
                            j += 1;
                        }
                    }
                }
                column += j - i - 1;
                i = j;
                continue;
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(CompileError {
                        message: format!("brackets nest deeper than {MAX_NESTING}"),
                        line,
                        column,
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '?' => {
                conditionals += 1;
                if conditionals > MAX_NESTING {
                    return Err(CompileError {
                        message: format!("more than {MAX_NESTING} conditionals (`?:`)"),
                        line,
                        column,
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// A walk of the parsed expression: bounds its depth and its comprehensions' nesting, refuses
/// unknown names, and records what it reads.
struct Walk<'a> {
    source: &'a str,
    program: &'a Program,
    /// The comprehension variables in scope.
    bound: Vec<&'a str>,
    comprehensions: usize,
    attribute_keys: Vec<String>,
    argument_keys: Option<Vec<String>>,
    request_fields: u8,
    reads_arguments: bool,
    reads_user: bool,
    reads_now: bool,
    calls_in_cidr: bool,
}

impl<'a> Walk<'a> {
    /// Records that `request.<field>` is read.
    fn read(&mut self, field: &str) {
        if let Some(i) = REQUEST_FIELDS.iter().position(|f| *f == field) {
            self.request_fields |= 1 << i;
        }
    }

    fn error(&self, at: &IdedExpr, message: String) -> CompileError {
        let (line, column) = self
            .program
            .source_info()
            .offset_for(at.id)
            .map_or((0, 0), |(start, _)| position(self.source, start as usize));
        CompileError {
            message,
            line,
            column,
        }
    }

    fn expr(&mut self, e: &'a IdedExpr, depth: usize) -> Result<(), CompileError> {
        if depth > MAX_DEPTH {
            return Err(self.error(e, format!("the condition nests deeper than {MAX_DEPTH}")));
        }
        let depth = depth + 1;
        match &e.expr {
            Expr::Ident(name) => self.ident(e, name),
            Expr::Select(select) => {
                if let Some(root) = root_name(&select.operand)
                    && !self.bound.contains(&root)
                {
                    return self.select(e, &select.operand, &select.field, depth);
                }
                self.expr(&select.operand, depth)
            }
            Expr::Call(call) => {
                // `request.attributes["ip"]`, `"ip" in request.attributes`: a literal key.
                let keyed = match (call.func_name.as_str(), call.args.as_slice()) {
                    (operators::INDEX, [map, key]) => Some((map, key)),
                    (operators::IN, [key, map]) => Some((map, key)),
                    _ => None,
                };
                if let Some((map, key)) = keyed
                    && let (Some(field), Expr::Literal(LiteralValue::String(key_text))) =
                        (self.request_field(map), &key.expr)
                {
                    self.read(field);
                    let key_text = key_text.inner().to_string();
                    match field {
                        "attributes" => self.attribute_keys.push(key_text),
                        "arguments" => {
                            self.reads_arguments = true;
                            if let Some(keys) = &mut self.argument_keys {
                                keys.push(key_text);
                            }
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                if call.func_name == "inCidr" {
                    self.calls_in_cidr = true;
                }
                if let Some(target) = &call.target {
                    self.expr(target, depth)?;
                }
                for arg in &call.args {
                    self.expr(arg, depth)?;
                }
                Ok(())
            }
            Expr::Comprehension(c) => {
                self.comprehensions += 1;
                if self.comprehensions > MAX_COMPREHENSION_NESTING {
                    return Err(self.error(
                        e,
                        format!(
                            "comprehensions (all, exists, map, filter...) nest deeper than \
                             {MAX_COMPREHENSION_NESTING}"
                        ),
                    ));
                }
                self.expr(&c.iter_range, depth)?;
                self.expr(&c.accu_init, depth)?;
                let scope = self.bound.len();
                self.bound.push(&c.iter_var);
                if let Some(var) = &c.iter_var2 {
                    self.bound.push(var);
                }
                self.bound.push(&c.accu_var);
                self.expr(&c.loop_cond, depth)?;
                self.expr(&c.loop_step, depth)?;
                self.expr(&c.result, depth)?;
                self.bound.truncate(scope);
                self.comprehensions -= 1;
                Ok(())
            }
            Expr::List(list) => list.elements.iter().try_for_each(|x| self.expr(x, depth)),
            Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(m) => {
                    self.expr(&m.key, depth)?;
                    self.expr(&m.value, depth)
                }
                cel::common::ast::EntryExpr::StructField(f) => self.expr(&f.value, depth),
            }),
            Expr::Struct(s) => Err(self.error(
                e,
                format!("no message types are known here (`{}{{...}}`)", s.type_name),
            )),
            Expr::Literal(_) | Expr::Unspecified => Ok(()),
        }
    }

    /// A name on its own: a comprehension variable, `now`, a type name, or `request` / `user`
    /// as a whole.
    fn ident(&mut self, e: &IdedExpr, name: &str) -> Result<(), CompileError> {
        if self.bound.contains(&name) || TYPE_NAMES.contains(&name) {
            return Ok(());
        }
        match name {
            "now" => self.reads_now = true,
            "user" => self.reads_user = true,
            "request" => {
                // The whole request: every argument (attributes still only by literal key).
                self.request_fields = u8::MAX;
                self.reads_arguments = true;
                self.argument_keys = None;
            }
            _ => {
                return Err(self.error(
                    e,
                    format!("unknown name `{name}`: conditions see request, user and now"),
                ));
            }
        }
        Ok(())
    }

    /// `operand.field`, where operand is a (free) name or a select of one.
    fn select(
        &mut self,
        e: &'a IdedExpr,
        operand: &'a IdedExpr,
        field: &str,
        depth: usize,
    ) -> Result<(), CompileError> {
        match &operand.expr {
            Expr::Ident(name) if name == "request" => {
                if !REQUEST_FIELDS.contains(&field) {
                    return Err(self.error(
                        e,
                        format!(
                            "unknown field `request.{field}`: a request has {}",
                            REQUEST_FIELDS.join(", ")
                        ),
                    ));
                }
                self.read(field);
                match field {
                    "attributes" => Err(self.error(
                        e,
                        "`request.attributes` can only be read by a literal key \
                         (request.attributes.ip, request.attributes[\"ip\"], \
                         \"ip\" in request.attributes)"
                            .into(),
                    )),
                    "arguments" => {
                        // The arguments as a whole (`size(request.arguments)`).
                        self.reads_arguments = true;
                        self.argument_keys = None;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            Expr::Ident(name) if name == "user" => {
                if !USER_FIELDS.contains(&field) {
                    return Err(self.error(
                        e,
                        format!(
                            "unknown field `user.{field}`: a user has {}",
                            USER_FIELDS.join(", ")
                        ),
                    ));
                }
                self.reads_user = true;
                Ok(())
            }
            Expr::Select(inner) => {
                if let (Expr::Ident(root), true) = (&inner.operand.expr, !inner.test)
                    && root == "request"
                {
                    // `request.attributes.ip`, `request.arguments.repo`: a literal key.
                    if !REQUEST_FIELDS.contains(&inner.field.as_str()) {
                        return self.select(operand, &inner.operand, &inner.field, depth);
                    }
                    self.read(&inner.field);
                    match inner.field.as_str() {
                        "attributes" => {
                            self.attribute_keys.push(field.to_string());
                            return Ok(());
                        }
                        "arguments" => {
                            self.reads_arguments = true;
                            if let Some(keys) = &mut self.argument_keys {
                                keys.push(field.to_string());
                            }
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                self.expr(operand, depth)
            }
            _ => self.expr(operand, depth),
        }
    }

    /// `request.attributes` or `request.arguments` (not shadowed): which one.
    fn request_field(&self, e: &IdedExpr) -> Option<&'static str> {
        match &e.expr {
            Expr::Select(select) if !select.test => match &select.operand.expr {
                Expr::Ident(name) if name == "request" && !self.bound.contains(&"request") => {
                    ["attributes", "arguments"]
                        .into_iter()
                        .find(|f| *f == select.field)
                }
                _ => None,
            },
            _ => None,
        }
    }
}

/// The name a select chain starts from (`request` for `request.arguments.repo`).
fn root_name(e: &IdedExpr) -> Option<&str> {
    let mut e = e;
    loop {
        match &e.expr {
            Expr::Ident(name) => return Some(name),
            Expr::Select(select) => e = &select.operand,
            _ => return None,
        }
    }
}

/// The 1-based line and column (in characters) of character offset `offset` of `source`.
fn position(source: &str, offset: usize) -> (usize, usize) {
    let (mut line, mut column) = (1, 1);
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::decide::Arguments;
    use crate::decide::Context as RequestContext;
    use crate::model::Timestamp;

    /// 2026-12-07T16:30:00Z: 17:30 in Berlin (CET, UTC+1).
    const NOW: i64 = 1_796_661_000_000;

    fn attributes() -> HashMap<String, String> {
        HashMap::from([
            ("ip".to_string(), "10.1.2.3".to_string()),
            ("ip6".to_string(), "2001:db8::7".to_string()),
        ])
    }

    fn arguments() -> Arguments {
        match serde_json::json!({
            "repo": "acme/widgets",
            "recipients": ["a@acme.com", "b@acme.com", "c@example.com"],
            "count": 3,
            "options": {"draft": true},
        }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// Evaluates `source` over a fixed request by alice (groups eng, oncall; MFA on) at NOW.
    fn eval_with(source: &str, arguments: Option<&Arguments>) -> Result<bool, String> {
        let expression = Expression::compile(source).map_err(|e| format!("compile: {e}"))?;
        let attributes = attributes();
        let request = Request {
            user: "alice",
            agent: "claude",
            connector: "github",
            tool: "create_issue",
            attributes: &attributes,
            context: RequestContext {
                authentication: None,
                arguments,
                now: Timestamp(NOW),
                grant: None,
            },
        };
        let groups = ["eng", "oncall"];
        expression.evaluate(&Input {
            request: &request,
            user: UserFacts {
                id: "u-alice",
                email: "alice@acme.com",
                groups: &groups,
                mfa: Mfa::Enabled,
            },
        })
    }

    fn eval(source: &str) -> Result<bool, String> {
        eval_with(source, Some(&arguments()))
    }

    fn compile_error(source: &str) -> CompileError {
        match Expression::compile(source) {
            Ok(_) => panic!("`{source}` compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn the_issue_examples_hold() {
        assert_eq!(
            eval(r#"request.arguments.repo.startsWith("acme/")"#),
            Ok(true)
        );
        assert_eq!(
            eval(r#"request.arguments.repo.startsWith("evil/")"#),
            Ok(false)
        );
        assert_eq!(
            eval(r#"inCidr(request.attributes.ip, "10.0.0.0/8")"#),
            Ok(true)
        );
        assert_eq!(
            eval(r#"inCidr(request.attributes.ip, "192.168.0.0/16")"#),
            Ok(false)
        );
        assert_eq!(eval(r#"now.getHours("Europe/Berlin") < 18"#), Ok(true));
        assert_eq!(eval(r#"now.getHours("Europe/Berlin") == 17"#), Ok(true));
        assert_eq!(eval(r#"now.getHours() == 16"#), Ok(true));
        assert_eq!(eval("size(request.arguments.recipients) <= 10"), Ok(true));
        assert_eq!(eval("size(request.arguments.recipients) <= 2"), Ok(false));
    }

    #[test]
    fn everything_a_condition_sees() {
        assert_eq!(
            eval(
                r#"request.agent == "claude" && request.connector == "github"
                   && request.tool == "create_issue""#
            ),
            Ok(true)
        );
        assert_eq!(
            eval(r#"user.id == "u-alice" && user.email.endsWith("@acme.com") && user.mfa"#),
            Ok(true)
        );
        assert_eq!(eval(r#""oncall" in user.groups"#), Ok(true));
        assert_eq!(eval(r#"request.attributes["ip"] == "10.1.2.3""#), Ok(true));
        assert_eq!(eval(r#""ip" in request.attributes"#), Ok(true));
        assert_eq!(eval(r#""country" in request.attributes"#), Ok(false));
        assert_eq!(eval("has(request.attributes.ip)"), Ok(true));
        assert_eq!(
            eval("request.arguments.count < 5 && request.arguments.options.draft"),
            Ok(true)
        );
        assert_eq!(
            eval(r#"request.arguments.recipients.all(r, r.endsWith("@acme.com"))"#),
            Ok(false)
        );
        assert_eq!(eval("size(request.arguments) == 4"), Ok(true));
        assert_eq!(
            eval(r#"request.arguments["repo"] == "acme/widgets""#),
            Ok(true)
        );
        assert_eq!(eval(r#"now > timestamp("2026-01-01T00:00:00Z")"#), Ok(true));
        assert_eq!(
            eval(r#"request.arguments.repo.matches("^acme/[a-z]+$")"#),
            Ok(true)
        );
    }

    #[test]
    fn absent_arguments_are_an_empty_map() {
        assert_eq!(eval_with("size(request.arguments) == 0", None), Ok(true));
        assert_eq!(eval_with("has(request.arguments.repo)", None), Ok(false));
        let missing = eval_with(r#"request.arguments.repo.startsWith("acme/")"#, None);
        assert!(missing.is_err(), "{missing:?}");
    }

    #[test]
    fn a_missing_argument_or_attribute_is_an_error() {
        let missing = eval(r#"request.arguments.branch == "main""#);
        assert!(missing.unwrap_err().contains("branch"));
        let missing = eval(r#"request.attributes.country == "DE""#);
        assert!(missing.unwrap_err().contains("country"));
    }

    #[test]
    fn a_non_boolean_result_is_an_error() {
        assert_eq!(
            eval("request.arguments.count"),
            Err("the condition is a int, not a bool".into())
        );
        assert!(eval(r#"request.arguments.repo"#).is_err());
        assert!(eval("1 / 0 == 1").is_err());
        assert!(eval(r#"inCidr(request.attributes.ip, "10.0.0.0/33")"#).is_err());
    }

    #[test]
    fn cidr_ranges() {
        assert_eq!(
            eval(r#"inCidr(request.attributes.ip6, "2001:db8::/32")"#),
            Ok(true)
        );
        assert_eq!(
            eval(r#"inCidr(request.attributes.ip6, "2001:db9::/32")"#),
            Ok(false)
        );
        assert_eq!(
            eval(r#"inCidr(request.attributes.ip6, "10.0.0.0/8")"#),
            Ok(false)
        );
        assert_eq!(eval(r#"inCidr("::ffff:10.9.9.9", "10.0.0.0/8")"#), Ok(true));
        assert_eq!(eval(r#"inCidr("10.1.2.3", "10.1.2.3")"#), Ok(true));
        assert_eq!(eval(r#"inCidr("10.1.2.4", "10.1.2.3/32")"#), Ok(false));
        assert_eq!(eval(r#"inCidr("1.2.3.4", "0.0.0.0/0")"#), Ok(true));
        assert_eq!(eval(r#"inCidr("not an ip", "0.0.0.0/0")"#), Ok(false));
        assert!(eval(r#"inCidr("1.2.3.4", "10.0.0.0/x")"#).is_err());
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let e = compile_error("request.tool == ");
        assert_eq!((e.line, e.column), (1, 17), "{e}");
        let e = compile_error("request.tool == \"a\" &&\n  (user.mfa ||)");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().starts_with("line 2, column "), "{e}");
    }

    #[test]
    fn unknown_names_and_fields_are_refused_with_their_position() {
        let e = compile_error("request.tool == \"x\" && usr.mfa");
        assert_eq!((e.line, e.column), (1, 24), "{e}");
        assert!(e.message.contains("unknown name `usr`"), "{e}");
        let e = compile_error("request.tol == \"x\"");
        assert!(e.message.contains("unknown field `request.tol`"), "{e}");
        let e = compile_error("user.phone == \"1\"");
        assert!(e.message.contains("unknown field `user.phone`"), "{e}");
        let e = compile_error("size(request.attributes) > 1");
        assert!(e.message.contains("literal key"), "{e}");
        // Comprehension variables are names too, in their scope only.
        assert!(Expression::compile("[1, 2].all(x, x > 0)").is_ok());
        assert!(Expression::compile("[1, 2].all(x, x > 0) && x > 0").is_err());
        assert!(Expression::compile("type(request.tool) == string").is_ok());
        // A comprehension variable shadows a name: `request` here is a list element.
        assert_eq!(eval("[1, 2].all(request, request > 0)"), Ok(true));
        assert_eq!(
            eval(r#"["a"].exists(user, user == "a") && user.mfa"#),
            Ok(true)
        );
    }

    #[test]
    fn reads_arguments_is_exact() {
        let reads = |s: &str| Expression::compile(s).map(|e| e.reads_arguments());
        assert_eq!(reads(r#"request.arguments.repo == "x""#), Ok(true));
        assert_eq!(reads("size(request.arguments) > 0"), Ok(true));
        assert_eq!(reads(r#"request.attributes.arguments == "x""#), Ok(false));
        assert_eq!(reads(r#"request.tool == "arguments""#), Ok(false));
        assert_eq!(reads(r#"[1].all(arguments, arguments > 0)"#), Ok(false));
    }

    fn refused_quickly(source: &str) -> CompileError {
        let started = Instant::now();
        // On a thread with a small stack, like a server's worker: nothing may recurse deeply.
        let source = source.to_string();
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || Expression::compile(&source).map(|_| ()))
            .expect("spawn")
            .join()
            .expect("compile did not overflow the stack");
        assert!(started.elapsed() < Duration::from_secs(2));
        result.expect_err("refused")
    }

    #[test]
    fn runaway_sources_are_refused_quickly() {
        let deep = "(".repeat(100_000);
        assert!(refused_quickly(&deep).message.contains("bytes long"));
        let deep = format!("{}true{}", "(".repeat(2000), ")".repeat(2000));
        assert!(refused_quickly(&deep).message.contains("nest deeper"));
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        let e = refused_quickly(&deep);
        assert_eq!((e.line, e.column), (1, MAX_NESTING + 1), "{e}");
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert!(refused_quickly(&deep).message.contains("nest deeper"));
        let huge = format!("\"{}\" == request.tool", "a".repeat(1 << 20));
        assert!(refused_quickly(&huge).message.contains("bytes long"));
        let conditionals = format!("{}true", "true ? true : ".repeat(40));
        assert!(
            refused_quickly(&conditionals)
                .message
                .contains("conditionals")
        );
        let comprehensions = "[1].all(a, [1].all(b, [1].all(c, true)))";
        assert!(
            refused_quickly(comprehensions)
                .message
                .contains("comprehensions")
        );
        // Long flat chains the bracket count does not see.
        let chain = format!("request.tool{}", ".a".repeat(2000));
        assert!(refused_quickly(&chain).message.contains("nests deeper"));
        let chain = format!("1{} == 1", " + 1".repeat(1000));
        assert!(refused_quickly(&chain).message.contains("nests deeper"));
        // The parser folds these.
        let chain = format!("{}true", "!".repeat(4000));
        assert_eq!(eval(&chain), Ok(true));
        let chain = format!("true{}", " || false".repeat(400));
        assert_eq!(eval(&chain), Ok(true));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let parens = "(".repeat(100);
        for source in [
            format!(r#"request.tool == "{parens}""#),
            format!(r#"request.tool == '{parens}'"#),
            format!(r##"request.tool == """{parens}""""##),
            format!(r#"request.tool == r"\{parens}""#),
            format!(r#"request.tool == "\"{parens}""#),
        ] {
            assert_eq!(eval(&source), Ok(false), "{source}");
        }
    }

    #[test]
    fn the_longest_accepted_chains_evaluate_on_a_small_stack() {
        // As deep as MAX_DEPTH allows, evaluated where a server's worker would.
        let links = MAX_DEPTH - 4;
        let chain = format!("0{} == {links}", " + 1".repeat(links));
        let expression = Expression::compile(&chain).expect("compiles");
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let request = Request {
                    user: "alice",
                    agent: "",
                    connector: "c",
                    tool: "t",
                    attributes: &crate::model::NoAttributes,
                    context: RequestContext::default(),
                };
                let input = Input {
                    request: &request,
                    user: UserFacts {
                        id: "u",
                        email: "",
                        groups: &[],
                        mfa: Mfa::Unknown,
                    },
                };
                assert_eq!(expression.evaluate(&input), Ok(true));
            })
            .expect("spawn")
            .join()
            .expect("no stack overflow");
    }

    #[test]
    fn oversized_arguments_are_an_error() {
        let many: Vec<i64> = (0..(MAX_ARGUMENT_VALUES as i64 + 1)).collect();
        let arguments = match serde_json::json!({ "items": many }) {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let e = eval_with("size(request.arguments.items) > 0", Some(&arguments)).unwrap_err();
        assert!(e.contains("too large"), "{e}");
        // Arguments the condition does not read are not converted, nor counted.
        assert_eq!(
            eval_with(r#"!has(request.arguments.repo)"#, Some(&arguments)),
            Ok(true)
        );
    }

    const TOKENS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ".",
        ",",
        ":",
        "?",
        "!",
        "-",
        "+",
        "*",
        "/",
        "%",
        "==",
        "<",
        "&&",
        "||",
        " in ",
        "request",
        "arguments",
        "attributes",
        "agent",
        "tool",
        "repo",
        "ip",
        "recipients",
        "user",
        "groups",
        "mfa",
        "now",
        "x",
        "1",
        "0",
        "2.5",
        "\"a\"",
        "'",
        "\"",
        "r\"",
        "\\",
        "\"\"\"",
        "\n",
        " ",
        "size",
        "has",
        "all",
        "exists",
        "map",
        "filter",
        "inCidr",
        "startsWith",
        "matches",
        "getHours",
        "\"Europe/Berlin\"",
        "\"10.0.0.0/8\"",
        "timestamp",
        "int",
        "string",
        "null",
        "true",
        "false",
    ];

    proptest::proptest! {
        /// Whatever the text, compiling answers (no panic, no overflow), and what compiles
        /// evaluates to an answer.
        #[test]
        fn any_text_compiles_or_is_refused(
            tokens in proptest::collection::vec(proptest::sample::select(TOKENS), 0..40),
            text in ".{0,40}",
        ) {
            for source in [tokens.concat(), text] {
                if Expression::compile(&source).is_ok() {
                    let _ = eval(&source);
                }
            }
        }
    }

    #[test]
    fn expressions_are_shared_across_threads() {
        fn shared<T: Send + Sync + Clone + std::fmt::Debug>() {}
        shared::<Expression>();
    }
}
