//! SCIM filters (RFC 7644 §3.4.2.2): parsing and evaluation on a resource's JSON.
//!
//! Grammar (RFC 7644 Figure 1), parsed by hand, recursive descent:
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! compValue = false / null / true / number / string
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`; parentheses group. Keywords
//! (operators, `and`, `or`, `not`, `true`, `false`, `null`) are case-insensitive. Beyond the RFC,
//! a value filter followed by a test of a sub-attribute, as Microsoft Entra ID sends it
//! (`emails[type eq "work"].value eq "x"`), is read as one value passing both
//! (`emails[type eq "work" and value eq "x"]`). A filter
//! is at most [`Bounds::max_bytes`] bytes and [`Bounds::max_depth`] levels of parentheses / `not` /
//! `[ ]` (settings `scim-max-filter-bytes` and `scim-max-filter-depth`, [`crate::Limits`]).
//!
//! Evaluation, where the RFC is silent or leaves a choice:
//! - attribute names, and schema URNs, compare case-insensitively;
//! - string values compare case-insensitively (`caseExact: false`), except `id`, `externalId` and
//!   `$ref`, which compare exactly;
//! - a multi-valued attribute matches when any of its values matches; a complex value compared
//!   without a sub-attribute (`emails eq "x"`, `members eq "id"`, `…:manager eq "id"`) compares
//!   its `value` sub-attribute;
//! - `ne` is the negation of `eq`: it matches when no value equals, including when the attribute
//!   is absent; `eq null` matches when the attribute is absent (`not (attr pr)`), `ne null` when
//!   it is present;
//! - `pr`: present, not null, not an empty string / array / object;
//! - `meta.created` and `meta.lastModified` compare as instants (RFC 3339) for `eq`, `ne`, `gt`,
//!   `ge`, `lt`, `le`; other strings order lexicographically (by lower-cased characters unless
//!   case-exact); numbers numerically; `co`, `sw`, `ew` apply to strings only (anything else does
//!   not match), and comparing values of different JSON types never matches;
//! - `gt`/`ge`/`lt`/`le` with `true`, `false` or `null`, on a boolean attribute (`active`,
//!   `primary`, `mfaEnabled`), or on a dateTime attribute with anything but an RFC 3339 string,
//!   is refused at parse time (`invalidFilter`).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::path::{self, AttrPath};
use crate::{Result, ScimError};

/// Longest filter accepted by default, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not ( )` and value filters `[ ]` accepted by default.
pub const MAX_DEPTH: usize = 32;

/// How long and how deeply nested a filter (or a PATCH path, which may hold one) may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Longest text, in bytes (`scim-max-filter-bytes`).
    pub max_bytes: usize,
    /// Deepest nesting of parentheses, `not ( )` and `[ ]` (`scim-max-filter-depth`).
    pub max_depth: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            max_bytes: MAX_FILTER_LEN,
            max_depth: MAX_DEPTH,
        }
    }
}

/// Multi-valued complex attributes of the core schemas whose elements carry a `value`.
const MULTI_VALUED: &[&str] = &[
    "emails",
    "phonenumbers",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509certificates",
    "groups",
    "members",
];

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    fn from_keyword(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    pub fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::Ne => ordering != Ordering::Equal,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::Ge => ordering != Ordering::Less,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::Le => ordering != Ordering::Greater,
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
        }
    }
}

/// A filter expression. `And` and `Or` hold two or more operands, so long chains stay flat.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// `attr pr`
    Present(AttrPath),
    /// `attr op value`, `value` a string, number, boolean or null.
    Compare {
        attr: AttrPath,
        op: CompareOp,
        value: Value,
    },
    /// `attr[filter]`: the inner filter's paths are relative to each value of `attr`.
    ValuePath {
        attr: AttrPath,
        filter: Box<Expr>,
    },
}

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

/// Parses a filter within the default [`Bounds`]: `invalidFilter` on errors, the detail says
/// where and why.
pub fn parse(text: &str) -> Result<Filter> {
    parse_within(text, Bounds::default())
}

/// [`parse`] within `bounds` (the server's settings).
pub fn parse_within(text: &str, bounds: Bounds) -> Result<Filter> {
    parse_filter(text, bounds).map_err(ScimError::invalid_filter)
}

fn parse_filter(text: &str, bounds: Bounds) -> std::result::Result<Filter, String> {
    if text.len() > bounds.max_bytes {
        return Err(format!(
            "the filter is {} bytes long, more than the {} accepted (`scim-max-filter-bytes`)",
            text.len(),
            bounds.max_bytes
        ));
    }
    if text.trim().is_empty() {
        return Err("empty filter".into());
    }
    let mut parser = Parser::new(text, 0, false, bounds.max_depth)?;
    let expr = parser.parse_or()?;
    match &parser.tok {
        Tok::End => Ok(Filter { expr }),
        Tok::RParen => Err(format!(
            "unbalanced parentheses: unexpected `)` at position {}",
            parser.position()
        )),
        other => Err(format!(
            "unexpected {} at position {}; expected `and`, `or` or the end of the filter",
            describe(other),
            parser.position()
        )),
    }
}

/// Parses the value filter of a PATCH path, starting just after its `[` at byte `start` of
/// `text`: the filter and the byte offset just after the closing `]`.
pub(crate) fn parse_value_filter(
    text: &str,
    start: usize,
    max_depth: usize,
) -> std::result::Result<(Filter, usize), String> {
    let mut parser = Parser::new(text, start, true, max_depth)?;
    parser.depth = 1;
    let expr = parser.parse_or()?;
    match &parser.tok {
        Tok::RBracket => Ok((Filter { expr }, parser.lexer.pos)),
        Tok::End => Err("missing `]` at the end of the value filter".into()),
        other => Err(format!(
            "unexpected {} at position {}; expected `and`, `or` or `]`",
            describe(other),
            parser.position()
        )),
    }
}

impl From<Expr> for Filter {
    fn from(expr: Expr) -> Filter {
        Filter { expr }
    }
}

impl Filter {
    /// The expression tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether `resource` (a full SCIM document, or one value of a multi-valued attribute for
    /// a value filter) matches. See the module documentation for the rules.
    pub fn matches(&self, resource: &Value) -> bool {
        eval(&self.expr, resource)
    }

    /// When the whole filter is `<attr> eq "<string>"`: the lower-cased attribute path and the
    /// value as given, so the server can answer from an index instead of scanning. A complex
    /// multi-valued attribute compared without a sub-attribute reads its `value`
    /// (`emails eq "x"` and `emails[value eq "x"]` are `("emails.value", "x")`); an extension
    /// attribute keeps its URN (`urn:…:2.0:user:employeenumber`); a core schema URN is dropped.
    pub fn as_equality(&self) -> Option<(String, String)> {
        match &self.expr {
            Expr::Compare {
                attr,
                op: CompareOp::Eq,
                value: Value::String(value),
            } => {
                let mut key = attr.key();
                if attr.sub_attribute.is_none()
                    && attr.extension().is_none()
                    && MULTI_VALUED.contains(&key.as_str())
                {
                    key.push_str(".value");
                }
                Some((key, value.clone()))
            }
            Expr::ValuePath { attr, filter } => match filter.as_ref() {
                Expr::Compare {
                    attr: inner,
                    op: CompareOp::Eq,
                    value: Value::String(value),
                } if inner.urn.is_none()
                    && inner.sub_attribute.is_none()
                    && inner.attribute.eq_ignore_ascii_case("value") =>
                {
                    Some((format!("{}.value", attr.key()), value.clone()))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Every attribute path the filter reads, lower-cased, once each, in order of appearance:
    /// `["username", "meta.lastmodified"]`; a value filter's paths are qualified by its attribute
    /// (`emails[type eq "work"]` reads `emails.type`).
    pub fn attributes(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_attributes(&self.expr, None, &mut out);
        out
    }
}

fn collect_attributes(expr: &Expr, parent: Option<&str>, out: &mut Vec<String>) {
    let mut push = |attr: &AttrPath| {
        let key = match parent {
            Some(parent) => format!("{parent}.{}", attr.key()),
            None => attr.key(),
        };
        if !out.contains(&key) {
            out.push(key);
        }
    };
    match expr {
        Expr::And(items) | Expr::Or(items) => {
            for item in items {
                collect_attributes(item, parent, out);
            }
        }
        Expr::Not(inner) => collect_attributes(inner, parent, out),
        Expr::Present(attr) | Expr::Compare { attr, .. } => push(attr),
        Expr::ValuePath { attr, filter } => {
            let key = attr.key();
            collect_attributes(filter, Some(&key), out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Str(String),
    /// Anything else up to whitespace, a parenthesis, a bracket or a quote: attribute paths,
    /// operators, `and`/`or`/`not`, numbers, `true`/`false`/`null`.
    Word(String),
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::LBracket => "`[`".into(),
        Tok::RBracket => "`]`".into(),
        Tok::Str(s) => format!("string {}", Value::String(s.clone())),
        Tok::Word(w) => format!("`{w}`"),
        Tok::End => "the end of the filter".into(),
    }
}

#[derive(Clone)]
struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl Lexer<'_> {
    /// 1-based character position of byte offset `at`.
    fn column(&self, at: usize) -> usize {
        self.text.get(..at).map_or(at, |s| s.chars().count()) + 1
    }

    /// The next token and the byte offset where it starts.
    fn next_token(&mut self) -> std::result::Result<(Tok, usize), String> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok((Tok::End, start));
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '"' => {
                let len = string_len(trimmed).ok_or_else(|| {
                    format!(
                        "unterminated string starting at position {}",
                        self.column(start)
                    )
                })?;
                let literal = &trimmed[..len];
                let value: String = serde_json::from_str(literal).map_err(|e| {
                    format!(
                        "invalid string {literal} at position {}: {e}",
                        self.column(start)
                    )
                })?;
                self.pos += len;
                return Ok((Tok::Str(value), start));
            }
            _ => {
                let len = trimmed
                    .find(|c: char| c.is_whitespace() || "()[]\"".contains(c))
                    .unwrap_or(trimmed.len());
                self.pos += len;
                return Ok((Tok::Word(trimmed[..len].to_string()), start));
            }
        };
        self.pos += 1;
        Ok((tok, start))
    }
}

/// Length in bytes of the JSON string literal `s` starts with (quotes included), if closed.
fn string_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some(i + 1);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The current (not yet consumed) token and where it starts.
    tok: Tok,
    tok_at: usize,
    depth: usize,
    max_depth: usize,
    /// Inside `[ ]`: no nested value filters.
    in_brackets: bool,
}

impl<'a> Parser<'a> {
    fn new(
        text: &'a str,
        start: usize,
        in_brackets: bool,
        max_depth: usize,
    ) -> std::result::Result<Parser<'a>, String> {
        let mut lexer = Lexer { text, pos: start };
        let (tok, tok_at) = lexer.next_token()?;
        Ok(Parser {
            lexer,
            tok,
            tok_at,
            depth: 0,
            max_depth,
            in_brackets,
        })
    }

    fn position(&self) -> usize {
        self.lexer.column(self.tok_at)
    }

    fn at(&self) -> String {
        if self.tok == Tok::End {
            "at the end of the filter".into()
        } else {
            format!("at position {}", self.position())
        }
    }

    /// Consumes the current token, returning it and its position.
    fn bump(&mut self) -> std::result::Result<(Tok, usize), String> {
        let (next, next_at) = self.lexer.next_token()?;
        let tok = std::mem::replace(&mut self.tok, next);
        let at = std::mem::replace(&mut self.tok_at, next_at);
        Ok((tok, at))
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn enter(&mut self) -> std::result::Result<(), String> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(format!(
                "nested deeper than {} levels at position {} (`scim-max-filter-depth`)",
                self.max_depth,
                self.position()
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> std::result::Result<Expr, String> {
        let first = self.parse_and()?;
        if !self.is_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("or") {
            self.bump()?;
            items.push(self.parse_and()?);
        }
        Ok(Expr::Or(items))
    }

    fn parse_and(&mut self) -> std::result::Result<Expr, String> {
        let first = self.parse_unary()?;
        if !self.is_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.is_keyword("and") {
            self.bump()?;
            items.push(self.parse_unary()?);
        }
        Ok(Expr::And(items))
    }

    /// `( filter )`, the closing parenthesis of a group opened at `open_at`.
    fn close_paren(&mut self, open_at: usize) -> std::result::Result<(), String> {
        match &self.tok {
            Tok::RParen => {
                self.bump()?;
                self.depth -= 1;
                Ok(())
            }
            Tok::End => Err(format!(
                "unbalanced parentheses: the `(` at position {} is never closed",
                self.lexer.column(open_at)
            )),
            other => Err(format!(
                "expected `)`, `and` or `or` at position {}, found {}",
                self.position(),
                describe(other)
            )),
        }
    }

    fn parse_unary(&mut self) -> std::result::Result<Expr, String> {
        match &self.tok {
            Tok::LParen => {
                self.enter()?;
                let (_, open_at) = self.bump()?;
                let inner = self.parse_or()?;
                self.close_paren(open_at)?;
                Ok(inner)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                let (after, _) = self.lexer.clone().next_token()?;
                match after {
                    Tok::LParen => {
                        self.bump()?;
                        self.enter()?;
                        let (_, open_at) = self.bump()?;
                        let inner = self.parse_or()?;
                        self.close_paren(open_at)?;
                        Ok(Expr::Not(Box::new(inner)))
                    }
                    // An attribute called `not`.
                    Tok::LBracket => self.parse_attr_expr(),
                    Tok::Word(w) if w.eq_ignore_ascii_case("pr") => self.parse_attr_expr(),
                    Tok::Word(w) if CompareOp::from_keyword(&w).is_some() => self.parse_attr_expr(),
                    other => Err(format!(
                        "expected `(` after `not` at position {}, found {}",
                        self.position(),
                        describe(&other)
                    )),
                }
            }
            Tok::Word(_) => self.parse_attr_expr(),
            Tok::RParen => Err(format!(
                "unbalanced parentheses: unexpected `)` at position {}",
                self.position()
            )),
            Tok::End => Err("missing expression at the end of the filter".into()),
            other => Err(format!(
                "expected an expression (an attribute name, `not` or `(`) at position {}, found {}",
                self.position(),
                describe(other)
            )),
        }
    }

    /// The current token is a word: an attribute path, then `[…]`, `pr` or `op value`.
    fn parse_attr_expr(&mut self) -> std::result::Result<Expr, String> {
        let (tok, at) = self.bump()?;
        let Tok::Word(word) = tok else {
            return Err(format!(
                "expected an attribute name at position {}",
                self.lexer.column(at)
            ));
        };
        let attr = path::parse_attr_path(&word).map_err(|why| {
            format!(
                "invalid attribute path at position {}: {why}",
                self.lexer.column(at)
            )
        })?;
        match &self.tok {
            Tok::LBracket => {
                if self.in_brackets {
                    return Err(format!(
                        "nested value filters are not allowed (position {})",
                        self.position()
                    ));
                }
                if attr.sub_attribute.is_some() {
                    return Err(format!(
                        "a value filter applies to an attribute, not to the sub-attribute `{attr}` \
                         (position {})",
                        self.position()
                    ));
                }
                self.enter()?;
                let (_, open_at) = self.bump()?;
                self.in_brackets = true;
                let inner = self.parse_or()?;
                self.in_brackets = false;
                match &self.tok {
                    Tok::RBracket => {
                        self.bump()?;
                        self.depth -= 1;
                    }
                    Tok::End => {
                        return Err(format!(
                            "the `[` at position {} is never closed",
                            self.lexer.column(open_at)
                        ));
                    }
                    other => {
                        return Err(format!(
                            "expected `]`, `and` or `or` at position {}, found {}",
                            self.position(),
                            describe(other)
                        ));
                    }
                }
                // Microsoft Entra ID sends `emails[type eq "work"].value eq "x"`: a value filter,
                // then a test of a sub-attribute of the same value. It means one value passing
                // both, which is what `emails[type eq "work" and value eq "x"]` says.
                if let Tok::Word(w) = &self.tok
                    && let Some(sub) = w.strip_prefix('.')
                {
                    let sub_at = self.position();
                    let sub = path::parse_attr_path(sub)
                        .ok()
                        .filter(|s| s.sub_attribute.is_none() && s.urn.is_none())
                        .ok_or_else(|| {
                            format!(
                                "`{attr}[…]{w}` at position {sub_at}: expected a sub-attribute \
                                 name after the value filter"
                            )
                        })?;
                    self.bump()?;
                    let test = self.parse_condition(sub)?;
                    return Ok(Expr::ValuePath {
                        attr,
                        filter: Box::new(match inner {
                            Expr::And(mut items) => {
                                items.push(test);
                                Expr::And(items)
                            }
                            inner => Expr::And(vec![inner, test]),
                        }),
                    });
                }
                Ok(Expr::ValuePath {
                    attr,
                    filter: Box::new(inner),
                })
            }
            _ => self.parse_condition(attr),
        }
    }

    /// `pr`, or an operator and its value, after the attribute path `attr`.
    fn parse_condition(&mut self, attr: AttrPath) -> std::result::Result<Expr, String> {
        match &self.tok {
            Tok::Word(op) if op.eq_ignore_ascii_case("pr") => {
                self.bump()?;
                Ok(Expr::Present(attr))
            }
            Tok::Word(op) => {
                let Some(op) = CompareOp::from_keyword(op) else {
                    return Err(format!(
                        "unknown operator {} at position {}; expected one of eq, ne, co, sw, ew, \
                         pr, gt, ge, lt, le",
                        describe(&self.tok),
                        self.position()
                    ));
                };
                self.bump()?;
                let value = self.parse_value(&attr, op)?;
                Ok(Expr::Compare { attr, op, value })
            }
            Tok::End => Err(format!(
                "missing operator after `{attr}` at the end of the filter"
            )),
            other => Err(format!(
                "expected an operator after `{attr}` at position {}, found {}",
                self.position(),
                describe(other)
            )),
        }
    }

    fn parse_value(
        &mut self,
        attr: &AttrPath,
        op: CompareOp,
    ) -> std::result::Result<Value, String> {
        let keyword = op.keyword();
        let at = self.at();
        let value = match &self.tok {
            Tok::Str(s) => Value::String(s.clone()),
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => match serde_json::from_str::<Number>(w) {
                    Ok(n) => Value::Number(n),
                    Err(_) => {
                        return Err(format!(
                            "invalid comparison value `{w}` after `{keyword}` {at}: expected a \
                             string in double quotes, a number, true, false or null"
                        ));
                    }
                },
            },
            Tok::End => {
                return Err(format!(
                    "missing comparison value after `{attr} {keyword}` at the end of the filter"
                ));
            }
            other => {
                return Err(format!(
                    "expected a comparison value after `{attr} {keyword}` {at}, found {}",
                    describe(other)
                ));
            }
        };
        if op.is_ordering() {
            if matches!(value, Value::Bool(_) | Value::Null) {
                return Err(format!(
                    "`{keyword}` cannot compare with {value} ({at}): ordering applies to strings, \
                     numbers and dates"
                ));
            }
            if is_boolean_attr(attr) {
                return Err(format!(
                    "`{keyword}` cannot compare the boolean attribute `{attr}` ({at})"
                ));
            }
            if is_datetime_attr(attr) && value.as_str().and_then(instant).is_none() {
                return Err(format!(
                    "`{attr}` is a dateTime: compare it with an RFC 3339 string such as \
                     \"2026-01-01T00:00:00Z\", not {value} ({at})"
                ));
            }
        }
        self.bump()?;
        Ok(value)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// `key` in `map`, exactly or else case-insensitively.
pub(crate) fn get_ci<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| eq_ci(k, key))
            .map(|(_, value)| value)
    })
}

fn lower(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars().flat_map(char::to_lowercase)
}

/// Case-insensitive equality (full Unicode lower-casing, character by character).
pub(crate) fn eq_ci(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        lower(a).eq(lower(b))
    }
}

/// `s` lower-cased the way [`eq_ci`] compares.
pub(crate) fn to_lower(s: &str) -> String {
    lower(s).collect()
}

fn instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn is_datetime_attr(attr: &AttrPath) -> bool {
    attr.extension().is_none()
        && attr.attribute.eq_ignore_ascii_case("meta")
        && attr.sub_attribute.as_deref().is_some_and(|sub| {
            sub.eq_ignore_ascii_case("created") || sub.eq_ignore_ascii_case("lastModified")
        })
}

fn is_boolean_attr(attr: &AttrPath) -> bool {
    let leaf = attr.leaf();
    match attr.extension() {
        None => leaf.eq_ignore_ascii_case("active") || leaf.eq_ignore_ascii_case("primary"),
        Some(urn) => {
            urn.eq_ignore_ascii_case(path::PORTCULLIS_USER)
                && leaf.eq_ignore_ascii_case("mfaEnabled")
        }
    }
}

fn is_case_exact(attr: &AttrPath) -> bool {
    let leaf = attr.leaf();
    ["id", "externalId", "$ref"]
        .iter()
        .any(|name| leaf.eq_ignore_ascii_case(name))
}

/// The value of `attr` in `resource` (before its sub-attribute).
fn lookup<'v>(resource: &'v Value, attr: &AttrPath) -> Option<&'v Value> {
    let root = resource.as_object()?;
    let container = match attr.extension() {
        Some(urn) => get_ci(root, urn)?.as_object()?,
        None => root,
    };
    get_ci(container, &attr.attribute)
}

fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(map) => map.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn present_at(value: &Value, sub: Option<&str>) -> bool {
    match sub {
        None => is_present(value),
        Some(sub) => match value {
            Value::Array(items) => items.iter().any(|item| {
                item.as_object()
                    .and_then(|o| get_ci(o, sub))
                    .is_some_and(is_present)
            }),
            Value::Object(map) => get_ci(map, sub).is_some_and(is_present),
            _ => false,
        },
    }
}

/// The comparable value of one value: a complex value compares its `value` sub-attribute.
fn scalar(value: &Value) -> Option<&Value> {
    match value {
        Value::Object(map) => get_ci(map, "value"),
        other => Some(other),
    }
}

fn any_scalar(value: &Value, test: &mut impl FnMut(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().filter_map(scalar).any(&mut *test),
        other => scalar(other).is_some_and(test),
    }
}

/// Whether any value `attr` reads (every element of a multi-valued attribute, the sub-attribute
/// of each) passes `test`.
fn any_value(value: &Value, sub: Option<&str>, test: &mut impl FnMut(&Value) -> bool) -> bool {
    match sub {
        None => any_scalar(value, test),
        Some(sub) => match value {
            Value::Array(items) => items.iter().any(|item| {
                item.as_object()
                    .and_then(|o| get_ci(o, sub))
                    .is_some_and(|v| any_scalar(v, test))
            }),
            Value::Object(map) => get_ci(map, sub).is_some_and(|v| any_scalar(v, test)),
            _ => false,
        },
    }
}

fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
        return Some(a.cmp(&b));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// One comparison (`op` is never `Ne`: that is `!Eq`).
fn compare(op: CompareOp, actual: &Value, expected: &Value, exact: bool, datetime: bool) -> bool {
    match (actual, expected) {
        (Value::String(a), Value::String(b)) => {
            if datetime && (op == CompareOp::Eq || op.is_ordering()) {
                if let (Some(a), Some(b)) = (instant(a), instant(b)) {
                    return op.holds(a.cmp(&b));
                }
                if op.is_ordering() {
                    return false;
                }
            }
            match op {
                CompareOp::Eq | CompareOp::Ne if exact => a == b,
                CompareOp::Eq | CompareOp::Ne => eq_ci(a, b),
                CompareOp::Co if exact => a.contains(b.as_str()),
                CompareOp::Sw if exact => a.starts_with(b.as_str()),
                CompareOp::Ew if exact => a.ends_with(b.as_str()),
                CompareOp::Co => to_lower(a).contains(&to_lower(b)),
                CompareOp::Sw => to_lower(a).starts_with(&to_lower(b)),
                CompareOp::Ew => to_lower(a).ends_with(&to_lower(b)),
                _ if exact => op.holds(a.cmp(b)),
                _ => op.holds(lower(a).cmp(lower(b))),
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
                && number_cmp(a, b).is_some_and(|o| op.holds(o))
        }
        (Value::Bool(a), Value::Bool(b)) => op == CompareOp::Eq && a == b,
        _ => false,
    }
}

fn eval_compare(resource: &Value, attr: &AttrPath, op: CompareOp, expected: &Value) -> bool {
    let found = lookup(resource, attr);
    let sub = attr.sub_attribute.as_deref();
    if expected.is_null() {
        let present = found.is_some_and(|v| present_at(v, sub));
        return match op {
            CompareOp::Eq => !present,
            CompareOp::Ne => present,
            _ => false,
        };
    }
    let Some(found) = found else {
        return op == CompareOp::Ne;
    };
    let exact = is_case_exact(attr);
    let datetime = is_datetime_attr(attr);
    match op {
        CompareOp::Ne => !any_value(found, sub, &mut |v| {
            compare(CompareOp::Eq, v, expected, exact, datetime)
        }),
        op => any_value(found, sub, &mut |v| {
            compare(op, v, expected, exact, datetime)
        }),
    }
}

fn eval(expr: &Expr, resource: &Value) -> bool {
    match expr {
        Expr::And(items) => items.iter().all(|e| eval(e, resource)),
        Expr::Or(items) => items.iter().any(|e| eval(e, resource)),
        Expr::Not(inner) => !eval(inner, resource),
        Expr::Present(attr) => {
            lookup(resource, attr).is_some_and(|v| present_at(v, attr.sub_attribute.as_deref()))
        }
        Expr::Compare { attr, op, value } => eval_compare(resource, attr, *op, value),
        Expr::ValuePath { attr, filter } => match lookup(resource, attr) {
            Some(Value::Array(items)) => items.iter().any(|item| eval(filter, item)),
            Some(value @ Value::Object(_)) => eval(filter, value),
            _ => false,
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Display: a canonical filter that parses back to the same tree.

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    if matches!(item, Expr::Or(_)) {
                        write!(f, "({item})")?;
                    } else {
                        write!(f, "{item}")?;
                    }
                }
                Ok(())
            }
            Expr::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{item}")?;
                }
                Ok(())
            }
            Expr::Not(inner) => write!(f, "not ({inner})"),
            Expr::Present(attr) => write!(f, "{attr} pr"),
            Expr::Compare { attr, op, value } => write!(f, "{attr} {} {value}", op.keyword()),
            Expr::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(text: &str) -> Filter {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(filter) => panic!("{text} parsed as {filter:?}"),
            Err(e) => {
                assert_eq!(e.status, 400);
                assert_eq!(e.scim_type, Some("invalidFilter"), "{text}");
                e.detail
            }
        }
    }

    fn user() -> Value {
        json!({
            "schemas": [
                "urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User"
            ],
            "id": "u0000042",
            "externalId": "00uAbC123",
            "userName": "Feifei.Kay42@Example.com",
            "name": {"givenName": "Feifei", "familyName": "Kay", "formatted": "Feifei Kay"},
            "displayName": "Feifei Kay",
            "emails": [
                {"value": "feifei.kay42@example.com", "type": "work", "primary": true},
                {"value": "fk@home.example.org", "type": "home"}
            ],
            "active": true,
            "title": "Staff Engineer",
            "photos": [{"value": "https://photos.example.com/fk.jpg", "type": "photo"}],
            "loginCount": 42,
            "ratio": 0.5,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": "E-1001",
                "department": "Platform",
                "manager": {"value": "u0000007", "displayName": "Grace Hopper"}
            },
            "urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User": {"mfaEnabled": true},
            "meta": {
                "resourceType": "User",
                "created": "2026-01-01T00:00:00Z",
                "lastModified": "2026-03-15T12:30:00+01:00",
                "version": "W/\"3\"",
                "location": "https://portcullis.example.com/scim/v2/Users/u0000042"
            }
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "g0000001",
            "externalId": "okta-grp-1",
            "displayName": "Engineering",
            "members": [
                {"value": "u0000042", "display": "Feifei Kay", "$ref": "https://x/Users/u0000042"},
                {"value": "u0000007", "display": "Grace Hopper"}
            ],
            "meta": {"resourceType": "Group", "created": "2026-01-01T00:00:00Z",
                     "lastModified": "2026-01-02T00:00:00Z"}
        })
    }

    fn yes(text: &str) {
        assert!(f(text).matches(&user()), "{text} should match");
    }

    fn no(text: &str) {
        assert!(!f(text).matches(&user()), "{text} should not match");
    }

    #[test]
    fn entra_sub_attribute_tests_after_a_value_filter_need_one_value_to_pass_both() {
        yes(r#"emails[type eq "work"].value eq "feifei.kay42@example.com""#);
        yes(r#"emails[type eq "home"].value eq "FK@home.example.org""#);
        // The work email is not the home address, and no value is both.
        no(r#"emails[type eq "work"].value eq "fk@home.example.org""#);
        no(r#"emails[type eq "home"].value eq "feifei.kay42@example.com""#);
        yes(r#"emails[type eq "work" and primary eq true].value pr"#);
        // The same tree as the RFC's form, so it prints (and indexes) like it.
        assert_eq!(
            f(r#"emails[type eq "work"].value eq "x""#),
            f(r#"emails[type eq "work" and value eq "x"]"#)
        );
        assert_eq!(
            f(r#"emails[type eq "work"].value eq "x""#).to_string(),
            f(r#"emails[type eq "work" and value eq "x"]"#).to_string()
        );
    }

    #[test]
    fn eq_is_case_insensitive_on_values_and_names() {
        yes(r#"userName eq "feifei.kay42@example.com""#);
        yes(r#"USERNAME EQ "FEIFEI.KAY42@EXAMPLE.COM""#);
        yes(r#"username Eq "Feifei.Kay42@Example.com""#);
        no(r#"userName eq "feifei""#);
        yes(r#"displayName eq "feifei kay""#);
        yes(r#"name.familyName eq "kay""#);
        yes(r#"NAME.FAMILYNAME eq "KAY""#);
    }

    #[test]
    fn id_external_id_and_ref_are_case_exact() {
        yes(r#"id eq "u0000042""#);
        no(r#"id eq "U0000042""#);
        yes(r#"externalId eq "00uAbC123""#);
        no(r#"externalId eq "00uabc123""#);
        no(r#"externalId sw "00uab""#);
        yes(r#"externalId sw "00uAb""#);
        assert!(f(r#"members.$ref co "Users/u0000042""#).matches(&group()));
        assert!(!f(r#"members.$ref co "users/u0000042""#).matches(&group()));
    }

    #[test]
    fn ne() {
        yes(r#"userName ne "someone""#);
        no(r#"userName ne "FEIFEI.KAY42@example.com""#);
        // No value equals: matches for a multi-valued attribute only when none equals.
        no(r#"emails.type ne "home""#);
        yes(r#"emails.type ne "other""#);
        // Absent attribute.
        yes(r#"nickName ne "x""#);
        no(r#"nickName eq "x""#);
    }

    #[test]
    fn co_sw_ew() {
        yes(r#"userName co "KAY42""#);
        yes(r#"userName sw "feifei.""#);
        yes(r#"userName ew "@example.COM""#);
        no(r#"userName sw "kay""#);
        no(r#"userName ew "example""#);
        yes(r#"title co """#);
        // Non-strings never match.
        no("loginCount co 4");
        no("active co true");
        no(r#"active sw "t""#);
        no(r#"loginCount sw "4""#);
    }

    #[test]
    fn pr() {
        yes("userName pr");
        yes("name pr");
        yes("emails pr");
        yes("emails.type pr");
        yes("active pr");
        no("nickName pr");
        no("emails.display pr");
        let doc = json!({"title": "", "nickName": null, "emails": [], "name": {"givenName": null},
                         "photos": [{"value": ""}]});
        for text in [
            "title pr",
            "nickName pr",
            "emails pr",
            "name pr",
            "photos.value pr",
        ] {
            assert!(!f(text).matches(&doc), "{text}");
        }
        assert!(f("photos pr").matches(&json!({"photos": [{"value": "x"}]})));
    }

    #[test]
    fn ordering_on_strings_numbers_and_dates() {
        yes(r#"userName gt "a""#);
        yes(r#"userName gt "FEIFEI""#);
        yes(r#"userName lt "G""#);
        no(r#"userName lt "feifei""#);
        yes(r#"userName ge "FEIFEI.KAY42@EXAMPLE.COM""#);
        yes(r#"userName le "feifei.kay42@example.com""#);
        yes("loginCount gt 41");
        yes("loginCount ge 42");
        no("loginCount gt 42");
        yes("loginCount le 42.0");
        yes("loginCount lt 1e3");
        yes("ratio lt 1");
        yes("ratio eq 0.5");
        yes("loginCount eq 42");
        no(r#"loginCount gt "41""#);
        // Dates compare as instants, whatever the offset or precision.
        yes(r#"meta.lastModified gt "2026-03-15T11:00:00Z""#);
        no(r#"meta.lastModified gt "2026-03-15T11:30:00Z""#);
        yes(r#"meta.lastModified ge "2026-03-15T11:30:00Z""#);
        yes(r#"meta.lastModified eq "2026-03-15T11:30:00.000Z""#);
        yes(r#"meta.created lt "2026-01-01T00:00:01Z""#);
        yes(r#"meta.created le "2026-01-01T00:00:00Z""#);
        no(r#"meta.created lt "2026-01-01T00:00:00Z""#);
        // As strings this would not hold: "2026-03-15T12…" > "2026-03-15T11:45…".
        no(r#"meta.lastModified gt "2026-03-15T11:45:00Z""#);
    }

    #[test]
    fn booleans_and_null() {
        yes("active eq true");
        yes("active eq TRUE");
        no("active eq false");
        yes("active ne false");
        no(r#"active eq "true""#);
        yes("emails.primary eq true");
        yes("nickName eq null");
        no("userName eq null");
        yes("userName ne null");
        no("nickName ne null");
        yes("title eq null or title pr");
    }

    #[test]
    fn multi_valued_any_and_implicit_value() {
        yes(r#"emails eq "FK@home.example.org""#);
        yes(r#"emails.value ew "@example.com""#);
        yes(r#"emails.type eq "home""#);
        no(r#"emails.type eq "other""#);
        no(r#"emails eq "nobody@example.com""#);
        assert!(f(r#"members eq "u0000007""#).matches(&group()));
        assert!(f(r#"members.value eq "u0000042""#).matches(&group()));
        assert!(!f(r#"members eq "u0000001""#).matches(&group()));
        assert!(f(r#"members.display co "grace""#).matches(&group()));
        // `and` across the elements is not "the same element": value paths are.
        yes(r#"emails.type eq "home" and emails.primary eq true"#);
        no(r#"emails[type eq "home" and primary eq true]"#);
    }

    #[test]
    fn value_paths() {
        yes(r#"emails[type eq "work" and value co "@example.com"]"#);
        yes(r#"emails[type eq "work"]"#);
        yes(r#"EMAILS[TYPE EQ "WORK"]"#);
        no(r#"emails[type eq "work" and value co "@home"]"#);
        yes(r#"emails[not (type eq "work")]"#);
        yes(r#"emails[type eq "other" or primary eq true]"#);
        yes(r#"name[givenName sw "fei"]"#);
        no(r#"nickNames[value eq "x"]"#);
        yes(r#"userName pr and emails[type eq "home"] and not (emails[type eq "other"])"#);
        assert!(f(r#"members[value eq "u0000007"]"#).matches(&group()));
        assert!(f(r#"members[display sw "feifei"] or displayName eq "x""#).matches(&group()));
    }

    #[test]
    fn urn_attributes() {
        yes(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "platform""#,
        );
        yes(
            r#"URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:ENTERPRISE:2.0:USER:DEPARTMENT eq "PLATFORM""#,
        );
        yes(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager eq "u0000007""#);
        yes(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "u0000007""#,
        );
        yes(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName co "hopper""#,
        );
        yes(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber pr"#);
        yes("urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User:mfaEnabled eq true");
        no("urn:portcullis:params:scim:schemas:extension:portcullis:2.0:User:mfaEnabled eq false");
        yes(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "feifei""#);
        // Unqualified extension attributes are not looked up in extensions.
        no(r#"department eq "platform""#);
        no(r#"urn:example:other:1.0:User:department eq "platform""#);
    }

    #[test]
    fn precedence_not_and_or() {
        // and binds tighter than or: true or (false and false) = true.
        yes(r#"userName pr or nickName pr and title eq "x""#);
        // (true or false) and false = false.
        no(r#"(userName pr or nickName pr) and title eq "x""#);
        // false and false or true = (false and false) or true.
        yes(r#"nickName pr and title eq "x" or active eq true"#);
        no(r#"nickName pr and (title eq "x" or active eq true)"#);
        // not binds tighter than and.
        yes(r#"not (nickName pr) and active eq true"#);
        no(r#"not (userName pr) and active eq true"#);
        no(r#"not (userName pr or nickName pr)"#);
        yes(r#"not(not(userName pr))"#);
        yes(r#"NOT (nickName pr) AND active EQ true OR false eq true"#);
        yes("((((active eq true))))");

        match f(r#"a pr or b pr and c pr"#).expr() {
            Expr::Or(items) => {
                assert_eq!(items.len(), 2);
                assert!(matches!(&items[1], Expr::And(inner) if inner.len() == 2));
            }
            other => panic!("{other:?}"),
        }
        // Chains stay flat.
        match f("a pr and b pr and c pr and d pr").expr() {
            Expr::And(items) => assert_eq!(items.len(), 4),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn string_escapes_and_spacing() {
        let filter = f(r#"title eq "a \"quoted\" \\ \u00e9 value""#);
        match filter.expr() {
            Expr::Compare { value, .. } => assert_eq!(value, "a \"quoted\" \\ é value"),
            other => panic!("{other:?}"),
        }
        assert!(filter.matches(&json!({"title": "A \"Quoted\" \\ É value"})));
        assert!(f("  userName   eq\t\"x\"  ").matches(&json!({"userName": "X"})));
        assert!(
            f(r#"(userName eq "x")and(title pr)"#).matches(&json!({"userName": "x", "title": "t"}))
        );
        assert!(f(r#"title eq "ÉCOLE""#).matches(&json!({"title": "école"})));
        assert!(f(r#"title eq "(a) [b] and or""#).matches(&json!({"title": "(A) [B] AND OR"})));
    }

    #[test]
    fn entra_probe_and_as_equality() {
        let filter = f(r#"userName eq "3f7a3c0e-6a4f-4b7e-9d0b-2f2c4b1e8a11""#);
        assert_eq!(
            filter.as_equality(),
            Some((
                "username".to_string(),
                "3f7a3c0e-6a4f-4b7e-9d0b-2f2c4b1e8a11".to_string()
            ))
        );
        assert!(!filter.matches(&user()));
        for (text, key, value) in [
            (r#"externalId eq "00uAbC123""#, "externalid", "00uAbC123"),
            (r#"ID EQ "u1""#, "id", "u1"),
            (r#"emails.value eq "A@b.c""#, "emails.value", "A@b.c"),
            (r#"emails eq "a@b.c""#, "emails.value", "a@b.c"),
            (r#"emails[value eq "a@b.c"]"#, "emails.value", "a@b.c"),
            (r#"members.value eq "u1""#, "members.value", "u1"),
            (r#"members eq "u1""#, "members.value", "u1"),
            (
                r#"displayName eq "Engineering""#,
                "displayname",
                "Engineering",
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x""#,
                "username",
                "x",
            ),
            (
                r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "7""#,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:employeenumber",
                "7",
            ),
        ] {
            assert_eq!(
                f(text).as_equality(),
                Some((key.to_string(), value.to_string())),
                "{text}"
            );
        }
        for text in [
            r#"userName ne "x""#,
            r#"userName co "x""#,
            "loginCount eq 3",
            "active eq true",
            "userName eq null",
            r#"userName eq "x" and active eq true"#,
            r#"userName eq "x" or userName eq "y""#,
            r#"not (userName eq "x")"#,
            r#"(userName eq "x") and (userName eq "x")"#,
            r#"emails[type eq "work"]"#,
            "userName pr",
        ] {
            assert_eq!(f(text).as_equality(), None, "{text}");
        }
        // Parentheses around the single comparison do not matter.
        assert_eq!(
            f(r#"((userName eq "x"))"#).as_equality(),
            Some(("username".into(), "x".into()))
        );
    }

    #[test]
    fn attributes_read() {
        assert_eq!(
            f(r#"userName eq "x" and (meta.lastModified gt "2026-01-01T00:00:00Z" or USERNAME pr)"#)
                .attributes(),
            vec!["username", "meta.lastmodified"]
        );
        assert_eq!(
            f(r#"emails[type eq "work" and value co "@x"] or not (Name.GivenName pr)"#)
                .attributes(),
            vec!["emails.type", "emails.value", "name.givenname"]
        );
        assert_eq!(
            f(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:Department eq "x""#)
                .attributes(),
            vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:department"]
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            r#"userName eq "x""#,
            r#"a pr or b pr and c pr"#,
            r#"(a pr or b pr) and c pr"#,
            r#"not (a pr or b eq 1) and c ne null"#,
            r#"emails[type eq "work" and not (value co "\"q\"")]"#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "m""#,
            "x gt 1.5 or y le -3 or z eq false",
        ] {
            let parsed = f(text);
            let again = f(&parsed.to_string());
            assert_eq!(parsed, again, "{text} → {parsed}");
        }
        assert_eq!(
            f("A PR OR (B PR AND C PR)").to_string(),
            "A pr or B pr and C pr"
        );
    }

    #[test]
    fn syntax_errors_say_where_and_why() {
        for (text, needle) in [
            ("", "empty filter"),
            ("   ", "empty filter"),
            (
                r#"(userName eq "x""#,
                "the `(` at position 1 is never closed",
            ),
            (r#"((userName eq "x")"#, "`(` at position 1 is never closed"),
            (
                r#"userName eq "x")"#,
                "unbalanced parentheses: unexpected `)` at position 16",
            ),
            (r#")"#, "unexpected `)` at position 1"),
            (
                r#"userName equals "x""#,
                "unknown operator `equals` at position 10",
            ),
            (r#"userName = "x""#, "unknown operator `=`"),
            (
                "userName eq",
                "missing comparison value after `userName eq` at the end",
            ),
            (
                "userName eq )",
                "expected a comparison value after `userName eq` at position 13",
            ),
            ("userName", "missing operator after `userName`"),
            (r#"userName eq "x" foo"#, "unexpected `foo` at position 17"),
            (
                r#"userName eq "x" "y""#,
                "unexpected string \"y\" at position 17",
            ),
            (r#"userName eq "x" and"#, "missing expression at the end"),
            (r#"userName eq "x" or or"#, "missing operator after `or`"),
            (r#"userName eq x"#, "invalid comparison value `x`"),
            (r#"userName eq 'x'"#, "invalid comparison value `'x'`"),
            (
                r#"userName eq "x"#,
                "unterminated string starting at position 13",
            ),
            (r#"userName eq "\q""#, "invalid string"),
            (r#"userName pr "x""#, "unexpected string"),
            (r#"not userName pr"#, "expected `(` after `not`"),
            (
                r#"emails[type eq "work"].value.x eq "x""#,
                "expected a sub-attribute name",
            ),
            (
                r#"emails[type eq "work"].value"#,
                "missing operator after `value`",
            ),
            (
                r#"emails[type eq "work""#,
                "the `[` at position 7 is never closed",
            ),
            (r#"emails[type eq "work")"#, "expected `]`"),
            (r#"emails[types[x eq 1]]"#, "nested value filters"),
            (r#"name.givenName[x eq 1]"#, "not to the sub-attribute"),
            (r#"a.b.c eq 1"#, "at most one sub-attribute"),
            (r#"1abc eq 1"#, "invalid attribute name"),
            (r#"[x eq 1]"#, "expected an expression"),
            (r#"active gt true"#, "`gt` cannot compare with true"),
            (r#"title le null"#, "`le` cannot compare with null"),
            (r#"active lt "x""#, "boolean attribute `active`"),
            (r#"emails[primary ge 1]"#, "boolean attribute"),
            (r#"meta.created gt "yesterday""#, "RFC 3339"),
            (r#"meta.lastModified lt 5"#, "RFC 3339"),
        ] {
            let detail = err(text);
            assert!(detail.contains(needle), "{text}: {detail}");
        }
    }

    #[test]
    fn positions_count_characters() {
        let detail = err(r#"title eq "é" bogus"#);
        assert!(detail.contains("position 14"), "{detail}");
    }

    #[test]
    fn limits() {
        let long = format!(r#"userName eq "{}""#, "x".repeat(MAX_FILTER_LEN));
        assert!(err(&long).contains("more than the 4096"));

        let nested =
            |depth: usize| format!("{}userName pr{}", "(".repeat(depth), ")".repeat(depth));
        assert!(f(&nested(MAX_DEPTH)).matches(&user()));
        assert!(err(&nested(MAX_DEPTH + 1)).contains("nested deeper than 32"));
        let nots =
            |depth: usize| format!("{}userName pr{}", "not (".repeat(depth), ")".repeat(depth));
        assert!(f(&nots(MAX_DEPTH)).matches(&user()));
        assert!(err(&nots(MAX_DEPTH + 1)).contains("nested deeper"));
        // A hostile filter within the length limit: refused, no stack overflow.
        let hostile = "(".repeat(MAX_FILTER_LEN);
        assert!(err(&hostile).contains("nested deeper"));
        // Long flat chains are fine.
        let chain = std::iter::repeat_n("a pr", 400)
            .collect::<Vec<_>>()
            .join(" and ");
        assert!(chain.len() < MAX_FILTER_LEN);
        assert!(!f(&chain).matches(&user()));
    }

    #[test]
    fn non_object_resources_never_match() {
        for doc in [json!(null), json!("x"), json!([1, 2]), json!(3)] {
            assert!(!f("userName pr").matches(&doc));
            assert!(!f(r#"userName eq "x""#).matches(&doc));
        }
        assert!(f("userName eq null").matches(&json!(null)));
    }
}
