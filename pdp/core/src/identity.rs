//! How a user is named: the limits on identifiers, their normalized form, and the one rule
//! that resolves a user reference (an id, an external id, an email or a user name).

/// The longest user identifier (id, external id, user name, email) accepted anywhere: by SCIM,
/// the admin API, the import and the decision API alike, so every stored user can be checked.
pub const MAX_KEY_LEN: usize = 1024;
