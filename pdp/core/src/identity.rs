//! How a user is named: the limits on identifiers, the form they are compared in, and the one
//! rule that resolves a user reference (an id, an external id, an email or a user name) for
//! every caller: decisions, the admin API, the decision log and the console.
//!
//! The rule ([`resolve`]):
//! 1. the user whose id is the reference, if there is one: an id always names its user;
//! 2. else every user whose external id is exactly the reference, or one of whose logins (their
//!    emails and user name) has the reference's [normalized](normalize) form: exactly one such
//!    user is the answer; several make the reference ambiguous (a decision denies, an admin
//!    call refuses and lists them); none make it unknown.
//!
//! No order between users or between kinds of keys enters the rule, so a newcomer can never
//! capture a reference that already named someone else: at worst it makes the reference
//! ambiguous, which denies. The store refuses, when they are written, the identifiers that
//! would collide where SCIM lets a service provider refuse them (user names and external ids).

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// The longest user identifier (id, external id, user name, email) accepted anywhere: by SCIM,
/// the admin API, the import and the decision API alike, so every stored user can be checked.
pub const MAX_KEY_LEN: usize = 1024;

/// The form logins (emails and user names) are compared in, in the spirit of PRECIS's
/// `UsernameCaseMapped` profile (RFC 8265): compatibility forms folded (NFKC, so fullwidth and
/// other width variants collide with their plain forms), lower-cased, and normalized again.
/// Plain ASCII, the common case, is only lower-cased.
pub fn normalize(login: &str) -> Cow<'_, str> {
    if login.is_ascii() {
        if login.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(login.to_ascii_lowercase());
        }
        return Cow::Borrowed(login);
    }
    let folded: String = login.nfkc().collect::<String>().to_lowercase();
    Cow::Owned(folded.nfkc().collect())
}

/// Calls `f` with `key` [normalized](normalize), without allocating for short ASCII keys (the
/// hot path looks emails up on every Check that names a user by email).
pub fn with_normalized<T>(key: &str, f: impl FnOnce(&str) -> T) -> T {
    let mut buf = [0u8; 128];
    if key.is_ascii() && key.len() <= buf.len() {
        let lower = &mut buf[..key.len()];
        lower.copy_from_slice(key.as_bytes());
        lower.make_ascii_lowercase();
        // Lower-casing ASCII keeps it ASCII, hence UTF-8.
        if let Ok(lower) = std::str::from_utf8(lower) {
            return f(lower);
        }
    }
    f(&normalize(key))
}

/// Why an identifier is refused when it is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_KEY_LEN} bytes")]
    TooLong,
    #[error("must not begin or end with whitespace")]
    Whitespace,
    #[error("must not contain U+{0:04X}: control, invisible and format characters are refused")]
    Character(u32),
    #[error("mixes scripts in a way that can imitate another name (UTS #39)")]
    MixedScripts,
    #[error("is not an email address (expected `local@domain`)")]
    NotAnEmail,
}

/// Checks an email address: an identifier ([`check`]) shaped `local@domain`, with one `@`, both
/// sides non-empty, no whitespace, and a domain of non-empty dot-separated labels. Deliberately
/// loose (RFC 5321 allows far more than identity providers send): it refuses values that are
/// not addresses at all, such as a name in the email column.
pub fn check_email(email: &str) -> Result<(), Invalid> {
    check(email)?;
    let shaped = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && domain.split('.').all(|label| !label.is_empty())
    });
    if shaped && !email.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(Invalid::NotAnEmail)
    }
}

/// Checks an identifier a user can be named by (user name, external id, email) before it is
/// stored: not empty, at most [`MAX_KEY_LEN`] bytes, no surrounding whitespace, no control,
/// zero-width or other invisible characters, and no run of letters that mixes scripts beyond
/// what UTS #39's "highly restrictive" level allows (Latin with Cyrillic, say: a look-alike of
/// a Latin name). Fullwidth and other compatibility forms are accepted: they are compared in
/// their [normalized](normalize) form, so they collide with the plain name instead.
pub fn check(identifier: &str) -> Result<(), Invalid> {
    if identifier.is_empty() {
        return Err(Invalid::Empty);
    }
    if identifier.len() > MAX_KEY_LEN {
        return Err(Invalid::TooLong);
    }
    if identifier.starts_with(char::is_whitespace) || identifier.ends_with(char::is_whitespace) {
        return Err(Invalid::Whitespace);
    }
    if identifier.is_ascii() {
        return match identifier.bytes().find(|b| b.is_ascii_control()) {
            Some(b) => Err(Invalid::Character(u32::from(b))),
            None => Ok(()),
        };
    }
    let folded: String = identifier.nfkc().collect();
    let refused = |c: char| {
        if c.is_ascii() {
            c.is_ascii_control()
        } else {
            // Non-ASCII characters must be ones UTS #39 allows in identifiers: that leaves out
            // controls, format characters (zero-width spaces and joiners, bidirectional
            // overrides), default-ignorable and obsolete ones.
            !c.identifier_allowed()
        }
    };
    if let Some(c) = folded.chars().find(|&c| refused(c)) {
        return Err(Invalid::Character(u32::from(c)));
    }
    // Per run of letters, as IDNA judges each label: `маша@example.ru` is fine, `pаypal` is not.
    let mixed = folded
        .split(|c: char| !c.is_alphabetic())
        .any(|letters| !letters.check_restriction_level(RestrictionLevel::HighlyRestrictive));
    if mixed {
        return Err(Invalid::MixedScripts);
    }
    Ok(())
}

/// What a user reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<U> {
    User(U),
    /// Several users share the key: only their ids name them.
    Ambiguous,
    Unknown,
}

impl<U> Resolved<U> {
    pub fn user(self) -> Option<U> {
        match self {
            Resolved::User(user) => Some(user),
            Resolved::Ambiguous | Resolved::Unknown => None,
        }
    }

    pub fn map<V>(self, f: impl FnOnce(U) -> V) -> Resolved<V> {
        match self {
            Resolved::User(user) => Resolved::User(f(user)),
            Resolved::Ambiguous => Resolved::Ambiguous,
            Resolved::Unknown => Resolved::Unknown,
        }
    }
}

/// How many users one index files under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matches<U> {
    None,
    One(U),
    Many,
}

impl<U> Matches<U> {
    pub fn map<V>(self, f: impl FnOnce(U) -> V) -> Matches<V> {
        match self {
            Matches::None => Matches::None,
            Matches::One(user) => Matches::One(f(user)),
            Matches::Many => Matches::Many,
        }
    }
}

/// An index of users by their keys: the snapshot's, the store's view.
pub trait UserKeys {
    /// A found user, cheap to copy.
    type User: Clone;
    /// The user with this id (ids are unique).
    fn with_id(&self, id: &str) -> Option<Self::User>;
    /// The users whose external id is exactly `external_id`.
    fn with_external_id(&self, external_id: &str) -> Matches<Self::User>;
    /// The users with an email or user name whose normalized form is `login` (normalized).
    fn with_login(&self, login: &str) -> Matches<Self::User>;
    /// Whether two found users are the same user.
    fn same(a: &Self::User, b: &Self::User) -> bool;
}

/// The user `reference` names in `keys`, by the rule in the module docs.
pub fn resolve<K: UserKeys + ?Sized>(keys: &K, reference: &str) -> Resolved<K::User> {
    resolve_by(keys, reference).map(|(user, _)| user)
}

/// How a reference named its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The reference is the user's id.
    Id,
    /// An external id, email or user name.
    Key,
}

/// [`resolve`], saying whether the reference was the user's id (so a caller that needs the id
/// has it without another lookup).
pub fn resolve_by<K: UserKeys + ?Sized>(keys: &K, reference: &str) -> Resolved<(K::User, By)> {
    if let Some(user) = keys.with_id(reference) {
        return Resolved::User((user, By::Id));
    }
    resolve_key(keys, reference).map(|user| (user, By::Key))
}

/// Step 2 of the rule: the users a non-id reference names.
fn resolve_key<K: UserKeys + ?Sized>(keys: &K, reference: &str) -> Resolved<K::User> {
    let external = keys.with_external_id(reference);
    if matches!(external, Matches::Many) {
        return Resolved::Ambiguous;
    }
    let login = with_normalized(reference, |login| keys.with_login(login));
    match (external, login) {
        (_, Matches::Many) | (Matches::Many, _) => Resolved::Ambiguous,
        (Matches::None, Matches::None) => Resolved::Unknown,
        (Matches::One(user), Matches::None) | (Matches::None, Matches::One(user)) => {
            Resolved::User(user)
        }
        (Matches::One(a), Matches::One(b)) => {
            if K::same(&a, &b) {
                Resolved::User(a)
            } else {
                Resolved::Ambiguous
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn emails_are_shaped_local_at_domain() {
        for good in ["ada@example.com", "a.b+c@mail.example.org", "ops@localhost"] {
            assert_eq!(check_email(good), Ok(()), "{good}");
        }
        for bad in [
            "x",
            "@example.com",
            "ada@",
            "a@b@c",
            "ada@example..com",
            "a da@example.com",
        ] {
            assert_eq!(check_email(bad), Err(Invalid::NotAnEmail), "{bad}");
        }
        assert_eq!(check_email(""), Err(Invalid::Empty));
    }
    use super::*;

    #[test]
    fn look_alikes_normalize_alike() {
        assert_eq!(normalize("Alice@Example.COM"), "alice@example.com");
        // Fullwidth letters fold to ASCII.
        assert_eq!(normalize("ａｌｉｃｅ@example.com"), "alice@example.com");
        assert_eq!(normalize("ÅSA@example.com"), normalize("åsa@example.com"));
        // A precomposed and a decomposed letter are one name.
        assert_eq!(normalize("jose\u{301}"), normalize("jos\u{e9}"));
        with_normalized("Bob@X", |n| assert_eq!(n, "bob@x"));
        with_normalized("ＢＯＢ", |n| assert_eq!(n, "bob"));
    }

    #[test]
    fn identifiers_that_hide_or_imitate_are_refused() {
        assert_eq!(check(""), Err(Invalid::Empty));
        assert_eq!(check(&"a".repeat(MAX_KEY_LEN + 1)), Err(Invalid::TooLong));
        assert!(check(&"a".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(check("alice "), Err(Invalid::Whitespace));
        assert_eq!(check(" alice"), Err(Invalid::Whitespace));
        assert_eq!(check("ali\0ce"), Err(Invalid::Character(0)));
        assert_eq!(check("ali\u{200b}ce"), Err(Invalid::Character(0x200b)));
        assert_eq!(check("alice\u{202e}"), Err(Invalid::Character(0x202e)));
        // Cyrillic а (U+0430) among Latin letters.
        assert_eq!(check("\u{430}lice@example.com"), Err(Invalid::MixedScripts));
        assert_eq!(check("alice@p\u{430}ypal.com"), Err(Invalid::MixedScripts));
        for fine in [
            "alice@example.com",
            "ａｌｉｃｅ",
            "jos\u{e9}@example.com",
            "\u{43c}\u{430}\u{448}\u{430}@example.ru",
            "山田太郎@example.jp",
            "00u1abcd",
            "John Smith",
        ] {
            assert_eq!(check(fine), Ok(()), "{fine}");
        }
    }
}
