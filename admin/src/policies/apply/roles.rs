//! The group roles section of ApplyPolicies: which groups hold which admin-API roles, as one
//! set (a group holding roles but not listed loses them), each change what UpdateGroup's
//! `roles` would make. Groups themselves (names, members) stay the directory's.

use super::Log;
use crate::{Error, Result, audit, convert, text};
use pdp::{Role, Timestamp};
use portcullis_proto::v1 as pb;
use std::collections::BTreeMap;
use store::Tx;

/// Most groups the section may list.
pub(crate) const MAX_GROUPS: usize = 1_000;

pub(super) struct Roles {
    /// The position in the request, the group id and its roles (sorted, each once).
    wanted: Vec<(usize, String, Vec<Role>)>,
    base: BTreeMap<String, Vec<Role>>,
}

fn parse(field: &str, groups: Vec<pb::GroupRoles>) -> Result<Vec<(usize, String, Vec<Role>)>> {
    if groups.len() > MAX_GROUPS {
        return Err(Error::invalid(
            field,
            format!("{} groups, the limit is {MAX_GROUPS}", groups.len()),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(groups.len());
    for (i, wire) in groups.into_iter().enumerate() {
        let pb::GroupRoles {
            group_id,
            name: _,
            roles,
        } = wire;
        text::required(&format!("{field}[{i}].group_id"), &group_id)?;
        if !seen.insert(group_id.clone()) {
            return Err(Error::invalid(
                format!("{field}[{i}].group_id"),
                format!("`{group_id}` is listed twice"),
            ));
        }
        let roles = convert::roles_from(&format!("{field}[{i}].roles"), &roles)?;
        out.push((i, group_id, roles));
    }
    Ok(out)
}

pub(super) fn prepare(section: pb::ApplyGroupRoles) -> Result<Roles> {
    let pb::ApplyGroupRoles { groups, expected } = section;
    let wanted = parse("group_roles", groups)?;
    let base = parse("group_roles.expected", expected)?
        .into_iter()
        .map(|(_, id, roles)| (id, roles))
        .collect();
    Ok(Roles { wanted, base })
}

/// Which groups' roles changed since the export.
pub(super) fn conflicts(tx: &Tx<'_, '_>, roles: &Roles, out: &mut Vec<String>) -> Result<()> {
    let current: BTreeMap<String, (String, Vec<Role>)> = tx
        .groups_with_roles()?
        .into_iter()
        .map(|g| (g.id, (g.display_name, g.roles)))
        .collect();
    for (id, (name, held)) in &current {
        if roles.base.get(id) != Some(held) {
            out.push(format!("the roles of group `{id}` ({name}) were changed"));
        }
    }
    for id in roles.base.keys() {
        if !current.contains_key(id) {
            out.push(format!("group `{id}` no longer holds a role"));
        }
    }
    Ok(())
}

/// Gives each listed group its roles and takes them from the groups not listed.
pub(super) fn apply(
    tx: &mut Tx<'_, '_>,
    roles: Roles,
    now: Timestamp,
    log: &mut Log,
) -> Result<()> {
    let holding: Vec<String> = tx.groups_with_roles()?.into_iter().map(|g| g.id).collect();
    let mut wanted: Vec<(String, String, Vec<Role>)> = roles
        .wanted
        .into_iter()
        .map(|(i, id, roles)| (format!("group_roles[{i}].group_id"), id, roles))
        .collect();
    for id in holding {
        if !wanted.iter().any(|(_, listed, _)| *listed == id) {
            wanted.push(("group_roles".to_owned(), id, Vec::new()));
        }
    }
    for (field, id, roles) in wanted {
        let before = tx.group(&id)?.ok_or_else(|| Error::NotFoundAt {
            field,
            kind: "group",
            id: id.clone(),
        })?;
        if before.roles == roles {
            continue;
        }
        let mut after = before.clone();
        after.roles = roles;
        after.updated_at = now;
        tx.put_group(&after)?;
        log.record(
            "group_roles",
            &id,
            "updated",
            audit::json(&before),
            audit::json(&after),
        );
    }
    Ok(())
}
