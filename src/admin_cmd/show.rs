//! How the admin CLI shows the API's messages: aligned tables and key/value lines for people,
//! JSON (lower-case enum names, RFC 3339 times) for machines.

use portcullis_proto::v1 as pb;
use serde_json::{Value, json};

/// A plain-text table: a header row, then rows, columns padded to their widest cell (in display
/// width) and separated by two spaces, with no borders and no trailing spaces.
pub struct Table(comfy_table::Table);

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        let mut table = comfy_table::Table::new();
        table
            .load_style(comfy_table::presets::NOTHING)
            .set_header(header.to_vec());
        // No left padding and two spaces on the right: the columns' gap; `trim_fmt` drops the
        // last column's.
        for column in table.column_iter_mut() {
            column.set_padding((0, 2));
        }
        Table(table)
    }

    pub fn row(&mut self, cells: Vec<String>) {
        // One line per row: the crate would split a cell at its newlines.
        self.0
            .add_row(cells.iter().map(|c| one_line(c)).collect::<Vec<_>>());
    }

    pub fn render(&self) -> String {
        let mut out = self.0.trim_fmt();
        out.push('\n');
        out
    }
}

/// A flag as a cell.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Key/value lines with the keys padded to one width.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {}\n", one_line(v)))
        .collect()
}

/// Control characters (newlines in a reason, say) would break the columns.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `-` for an empty cell.
pub fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// RFC 3339, or `None` when unset or out of range.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// For a table: to the second, `-` when unset.
pub fn time_cell(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return "-".to_owned();
    };
    let whole = prost_types::Timestamp {
        seconds: t.seconds,
        nanos: 0,
    };
    time(Some(&whole)).unwrap_or_else(|| "-".to_owned())
}

pub fn time_json(t: Option<&prost_types::Timestamp>) -> Value {
    time(t).map_or(Value::Null, Value::String)
}

/// `ROLE_READ_ONLY` → `read-only`: the proto name without its prefix, as the flags spell it.
fn lower(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix)
        .to_ascii_lowercase()
        .replace('_', "-")
}

pub fn role(r: pb::Role) -> String {
    lower(r.as_str_name(), "ROLE_")
}

pub fn roles(roles: impl Iterator<Item = pb::Role>) -> Vec<String> {
    roles.map(role).collect()
}

/// Roles for a table: `admin,read-only`, or `-`.
pub fn roles_cell(roles: impl Iterator<Item = pb::Role>) -> String {
    or_dash(&self::roles(roles).join(","))
}

pub fn user_status(s: pb::UserStatus) -> String {
    lower(s.as_str_name(), "USER_STATUS_")
}

pub fn mfa(m: pb::MfaStatus) -> String {
    lower(m.as_str_name(), "MFA_STATUS_")
}

pub fn managed_by(m: pb::ManagedBy) -> String {
    lower(m.as_str_name(), "MANAGED_BY_")
}

pub fn source(s: pb::MembershipSource) -> String {
    lower(s.as_str_name(), "MEMBERSHIP_SOURCE_")
}

// Actions, decisions and reasons have one spelling everywhere (`STEP_UP`, `NO_MATCHING_POLICY`):
// the gRPC name without its prefix, as `check`, the import format and the docs write them.

pub fn action(a: pb::PolicyAction) -> String {
    a.as_str_name()
        .trim_start_matches("POLICY_ACTION_")
        .to_owned()
}

pub fn decision(d: pb::Decision) -> String {
    portcullis_proto::names::decision(d).to_owned()
}

pub fn reason(r: pb::Reason) -> String {
    portcullis_proto::names::reason(r).to_owned()
}

fn avatar(a: Option<&pb::Avatar>) -> Value {
    a.map_or(
        Value::Null,
        |a| json!({"url": a.url, "initials": a.initials, "color": a.color}),
    )
}

pub fn user_row(u: &pb::UserRow) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "display_name": u.display_name,
        "status": user_status(u.status()),
        "mfa": mfa(u.mfa()),
        "created_at": time_json(u.created_at.as_ref()),
        "avatar": avatar(u.avatar.as_ref()),
    })
}

pub fn user(u: &pb::User) -> Value {
    json!({
        "id": u.id,
        "external_id": u.external_id,
        "user_name": u.user_name,
        "emails": u.emails,
        "display_name": u.display_name,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "avatar": avatar(u.avatar.as_ref()),
        "active": u.active,
        "status": user_status(u.status()),
        "mfa": mfa(u.mfa()),
        "lock": u.lock.as_ref().map(|l| json!({
            "locked_at": time_json(l.locked_at.as_ref()),
            "locked_by": l.locked_by,
            "reason": l.reason,
        })),
        "created_at": time_json(u.created_at.as_ref()),
        "updated_at": time_json(u.updated_at.as_ref()),
        "manager_id": (!u.manager_id.is_empty()).then_some(&u.manager_id),
    })
}

pub fn user_group(g: &pb::UserGroup) -> Value {
    json!({
        "group_id": g.group_id,
        "name": g.name,
        "managed_by": managed_by(g.managed_by()),
        "roles": roles(g.roles()),
        "joined_at": time_json(g.joined_at.as_ref()),
        "source": source(g.source()),
    })
}

pub fn effective_role(r: &pb::EffectiveRole) -> Value {
    json!({"role": role(r.role()), "group_ids": r.group_ids})
}

pub fn decision_activity(d: &pb::DecisionActivity) -> Value {
    json!({
        "time": time_json(d.time.as_ref()),
        "agent": d.agent,
        "connector": d.connector,
        "tool": d.tool,
        "decision": decision(d.decision()),
        "reason": reason(d.reason()),
        "policy_id": (!d.policy_id.is_empty()).then_some(&d.policy_id),
        "revision": d.revision,
    })
}

pub fn audit_event(e: &pb::AuditEvent) -> Value {
    // The records are JSON already: embed them rather than quote them.
    let record = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_owned()))
        }
    };
    json!({
        "seq": e.seq,
        "time": time_json(e.time.as_ref()),
        "actor": e.actor,
        "via": (!e.via.is_empty()).then_some(&e.via),
        "action": e.action,
        "target_kind": e.target_kind,
        "target_id": e.target_id,
        "outcome": e.outcome,
        "detail": e.detail,
        "before": record(&e.before_json),
        "after": record(&e.after_json),
        "revision": e.revision,
    })
}

pub fn group(g: &pb::Group) -> Value {
    json!({
        "id": g.id,
        "external_id": (!g.external_id.is_empty()).then_some(&g.external_id),
        "name": g.name,
        "description": g.description,
        "roles": roles(g.roles()),
        "managed_by": managed_by(g.managed_by()),
        "user_count": g.user_count,
        "created_at": time_json(g.created_at.as_ref()),
        "updated_at": time_json(g.updated_at.as_ref()),
    })
}

pub fn member(m: &pb::GroupMember) -> Value {
    json!({
        "user_id": m.user_id,
        "email": m.email,
        "display_name": m.display_name,
        "avatar": avatar(m.avatar.as_ref()),
        "status": user_status(m.status()),
        "joined_at": time_json(m.joined_at.as_ref()),
        "source": source(m.source()),
    })
}

pub fn policy_row(p: &pb::PolicyRow) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "connector": p.connector,
        "all_users": p.all_users,
        "user_count": p.user_count,
        "group_count": p.group_count,
        "all_tools": p.all_tools,
        "tool_count": p.tool_count,
        "action": action(p.action()),
        "enabled": p.enabled,
    })
}

pub fn policy(p: &pb::Policy) -> Value {
    let scope = p.scope.clone().unwrap_or_default();
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "connector": p.connector,
        "all_tools": p.all_tools,
        "tools": p.tools,
        "scope": {
            "all_users": scope.all_users,
            "user_ids": scope.user_ids,
            "group_ids": scope.group_ids,
        },
        "action": action(p.action()),
        "approval_flow_id": (!p.approval_flow_id.is_empty()).then_some(&p.approval_flow_id),
        "conditions": p.conditions.iter().map(|c| json!({
            "attribute": c.attribute,
            "operator": c.operator,
            "values": c.values,
        })).collect::<Vec<_>>(),
        "enabled": p.enabled,
        "created_at": time_json(p.created_at.as_ref()),
        "updated_at": time_json(p.updated_at.as_ref()),
        // Absent: every agent.
        "agents": p.agents.as_ref().map(|a| &a.agent_ids),
        "step_up": p.step_up.as_ref().map(|s| json!({
            "acr_values": s.acr_values,
            "amr_values": s.amr_values,
            "max_age": (s.max_age > 0).then_some(s.max_age),
        })),
        "expression": (!p.expression.is_empty()).then_some(&p.expression),
    })
}

pub fn token(t: &pb::ApiToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "user_id": t.user_id,
        "role": token_role(t),
        "created_at": time_json(t.created_at.as_ref()),
        "created_by": t.created_by,
        "expires_at": time_json(t.expires_at.as_ref()),
        "revoked_at": time_json(t.revoked_at.as_ref()),
    })
}

/// The token's own role, `None` when it has none (the user's groups' roles apply).
pub fn token_role(t: &pb::ApiToken) -> Option<String> {
    match t.role() {
        pb::Role::Unspecified => None,
        r => Some(role(r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_the_last() {
        let mut table = Table::new(&["A", "LONGER"]);
        table.row(vec!["wide cell".into(), "x".into()]);
        table.row(vec!["y".into(), "line\nbreak".into()]);
        assert_eq!(
            table.render(),
            "A          LONGER\nwide cell  x\ny          line break\n"
        );
    }

    #[test]
    fn tables_align_by_display_width() {
        // A wide character takes two columns: counting chars would misalign what follows.
        let mut table = Table::new(&["NAME", "ID"]);
        table.row(vec!["東京".into(), "a".into()]);
        table.row(vec!["x".into(), "b".into()]);
        assert_eq!(table.render(), "NAME  ID\n東京  a\nx     b\n");
    }

    #[test]
    fn enums_print_in_their_one_spelling() {
        assert_eq!(role(pb::Role::ReadOnly), "read-only");
        // Actions as decisions are spelled everywhere (import, check, JSON, gRPC names).
        assert_eq!(
            action(pb::PolicyAction::RequireApproval),
            "REQUIRE_APPROVAL"
        );
        assert_eq!(user_status(pb::UserStatus::Locked), "locked");
        assert_eq!(mfa(pb::MfaStatus::NotConfigured), "not-configured");
    }

    #[test]
    fn times_are_rfc_3339() {
        let t = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5_000_000,
        };
        assert_eq!(time(Some(&t)).unwrap(), "2023-11-14T22:13:20.005Z");
        assert_eq!(time_cell(Some(&t)), "2023-11-14T22:13:20Z");
        assert_eq!(time_cell(None), "-");
    }
}
