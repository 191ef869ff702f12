//! The settings section of ApplyPolicies: the organisation's settings and the default approval
//! flow, checked as UpdateSettings and SetDefaultApprovalFlow check them.

use super::Log;
use crate::agents::settings_from;
use crate::approvals::flows;
use crate::{Error, Result, audit};
use pdp::Settings;
use pdp::approval::BUILTIN_FLOW_ID;
use portcullis_proto::v1 as pb;
use std::collections::HashSet;
use store::Tx;

pub(super) struct Wanted {
    settings: Settings,
    /// `None`: the built-in flow.
    default_flow: Option<String>,
    expected_settings: Settings,
    expected_default_flow: Option<String>,
}

/// A default flow id as the store keeps it: none for the built-in flow.
fn default_from(field: &str, id: String) -> Result<Option<String>> {
    let id = Some(id).filter(|id| !id.is_empty() && id != BUILTIN_FLOW_ID);
    if let Some(id) = &id {
        flows::check_id(field, id)?;
    }
    Ok(id)
}

pub(super) fn prepare(section: pb::ApplySettings) -> Result<Wanted> {
    let pb::ApplySettings {
        settings,
        default_approval_flow_id,
        expected_settings,
        expected_default_approval_flow_id,
    } = section;
    Ok(Wanted {
        settings: settings_from("settings.settings", settings)?,
        default_flow: default_from(
            "settings.default_approval_flow_id",
            default_approval_flow_id,
        )?,
        expected_settings: settings_from("settings.expected_settings", expected_settings)?,
        expected_default_flow: default_from(
            "settings.expected_default_approval_flow_id",
            expected_default_approval_flow_id,
        )?,
    })
}

pub(super) fn conflicts(tx: &Tx<'_, '_>, wanted: &Wanted, out: &mut Vec<String>) -> Result<()> {
    if tx.settings()? != wanted.expected_settings {
        out.push("the settings were changed".to_owned());
    }
    if tx.default_flow()? != wanted.expected_default_flow {
        out.push("the default approval flow was changed".to_owned());
    }
    Ok(())
}

/// The default flow as the apply leaves it.
pub(super) fn default_flow(wanted: &Wanted) -> Option<&str> {
    wanted.default_flow.as_deref()
}

/// Writes the settings and the default flow if they differ. `flows`: the stored flows as the
/// apply leaves them, when it manages them (else the store is asked).
pub(super) fn apply(
    tx: &mut Tx<'_, '_>,
    wanted: &Wanted,
    flows: Option<&HashSet<String>>,
    log: &mut Log,
) -> Result<()> {
    let before = tx.settings()?;
    if before != wanted.settings {
        tx.put_settings(&wanted.settings)?;
        log.record(
            "settings",
            "settings",
            "updated",
            audit::json(&before),
            audit::json(&wanted.settings),
        );
    }
    let before = tx.default_flow()?;
    if before != wanted.default_flow {
        if let Some(id) = &wanted.default_flow {
            let exists = match flows {
                Some(kept) => kept.contains(id),
                None => tx.flow(id)?.is_some(),
            };
            if !exists {
                return Err(Error::NotFoundAt {
                    field: "settings.default_approval_flow_id".into(),
                    kind: "approval flow",
                    id: id.clone(),
                });
            }
        }
        tx.put_default_flow(wanted.default_flow.as_deref())?;
        log.record(
            "settings",
            "default_approval_flow",
            "updated",
            audit::json(&before),
            audit::json(&wanted.default_flow),
        );
    }
    Ok(())
}
