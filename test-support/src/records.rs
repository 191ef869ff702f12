//! Directory records several suites build the same way.

use pdp::{Membership, MembershipSource, Mfa, Timestamp, User};

/// An active user with MFA on, as a bulk import makes them (not over SCIM), with `external_id`
/// as the identity provider's id; created and updated at a fixed time.
pub fn imported_user(id: &str, email: &str, name: &str, external_id: String) -> User {
    User {
        id: id.into(),
        external_id: Some(external_id),
        user_name: email.into(),
        emails: vec![email.into()],
        display_name: name.into(),
        active: true,
        mfa: Mfa::Enabled,
        manager: None,
        created_at: Timestamp(1_700_000_000_000),
        updated_at: Timestamp(1_700_000_000_000),
        ..User::default()
    }
}

/// `user_id` in `group_id` from the identity provider, joined at a fixed time.
pub fn member(group_id: &str, user_id: &str) -> Membership {
    Membership {
        group_id: group_id.into(),
        user_id: user_id.into(),
        joined_at: Timestamp(1_700_000_100_000),
        source: MembershipSource::Idp,
    }
}
