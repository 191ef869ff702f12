//! The index of the log: which blocks hold a user's decisions. Each block is filed, in the
//! journal's index, under every user its decisions name: the resolved user's id (`i/<id>\0`),
//! else the key the caller named, lower-cased (`k/<key>\0`). Ids never contain `\0`; a key
//! might, which is why a name ends with one and the journal lists only exact names.

use std::collections::BTreeSet;

/// The index a decision is listed under: its resolved user's id, else the key it named.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum IndexKey<'d> {
    User(&'d str),
    Named(String),
}

impl<'d> IndexKey<'d> {
    pub(crate) fn of(user_id: Option<&'d str>, user: &str) -> IndexKey<'d> {
        match user_id {
            Some(id) => IndexKey::User(id),
            None => IndexKey::Named(user.to_lowercase()),
        }
    }

    /// Its name in the journal's index.
    pub(crate) fn name(&self) -> Vec<u8> {
        let (kind, key): (&[u8], &str) = match self {
            IndexKey::User(id) => (b"i/", id),
            IndexKey::Named(key) => (b"k/", key),
        };
        let mut name = Vec::with_capacity(kind.len() + key.len() + 1);
        name.extend_from_slice(kind);
        name.extend_from_slice(key.as_bytes());
        name.push(0);
        name
    }
}

/// The distinct names a block of decisions (given as `(user_id, user)`) is filed under.
pub(crate) fn names<'d>(
    decisions: impl IntoIterator<Item = (Option<&'d str>, &'d str)>,
) -> Vec<Vec<u8>> {
    let keys: BTreeSet<IndexKey<'d>> = decisions
        .into_iter()
        .map(|(user_id, user)| IndexKey::of(user_id, user))
        .collect();
    keys.iter().map(IndexKey::name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_stored_keys_and_never_prefix_each_other() {
        assert_eq!(IndexKey::of(Some("u1"), "Alice").name(), b"i/u1\0");
        assert_eq!(IndexKey::of(None, "Alice@X").name(), b"k/alice@x\0");
        assert_eq!(
            names([(None, "A"), (Some("u"), "a"), (None, "a")]),
            [b"i/u\0".to_vec(), b"k/a\0".to_vec()]
        );
        assert!(
            !IndexKey::User("u")
                .name()
                .starts_with(&IndexKey::Named("u".into()).name())
        );
    }
}
