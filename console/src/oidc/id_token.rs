//! The ID token, checked before anything in it is believed (OpenID Connect Core §3.1.3.7):
//! signed (RS256 or ES256) by a key of the provider's key set, issued by the configured issuer
//! for this client (`aud`, and `azp` when present), not expired and not issued in the future
//! or long ago (a minute of leeway for clocks), and carrying the nonce of this sign-in.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// The signature algorithms accepted (what providers sign ID tokens with; never `none` or a
/// shared-secret HMAC).
pub(crate) const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// Clock difference allowed between us and the provider.
const LEEWAY: Duration = Duration::from_secs(60);
/// An ID token issued longer ago than this is not one the code exchange just produced.
const MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// The longest ID token read.
const MAX_TOKEN: usize = 16 * 1024;
/// The most keys a key set may have.
const MAX_KEYS: usize = 100;

/// A signing key of the provider's key set.
pub(crate) struct Key {
    kid: Option<String>,
    /// The algorithm the key set pins it to, if any.
    alg: Option<Algorithm>,
    kty: String,
    key: DecodingKey,
}

/// The provider's usable signing keys; keys it cannot use (encryption keys, other types) are
/// left out rather than failing the whole set.
pub(crate) struct Keys(Vec<Key>);

impl Keys {
    pub fn from_set(set: &serde_json::Value) -> Result<Keys, String> {
        let entries = set
            .get("keys")
            .and_then(serde_json::Value::as_array)
            .ok_or("the key set has no `keys` array")?;
        let mut keys = Vec::new();
        for entry in entries.iter().take(MAX_KEYS) {
            let field = |name: &str| entry.get(name).and_then(serde_json::Value::as_str);
            if field("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: field("kid").map(str::to_owned),
                alg: field("alg").and_then(|a| Algorithm::from_str(a).ok()),
                kty: field("kty").unwrap_or("").to_owned(),
                key,
            });
        }
        Ok(Keys(keys))
    }

    /// The key that signed a token with this header, if the set has exactly one that fits.
    pub fn find(&self, alg: Algorithm, kid: Option<&str>) -> Option<&DecodingKey> {
        let kty = match alg {
            Algorithm::ES256 => "EC",
            _ => "RSA",
        };
        let mut fitting = self.0.iter().filter(|k| {
            k.kty == kty
                && k.alg.is_none_or(|a| a == alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        });
        let first = fitting.next()?;
        // Without a key id, several candidates would be a guess: refused.
        fitting.next().is_none().then_some(&first.key)
    }
}

/// What the token header says about its signature: the algorithm (one we accept) and key id.
pub(crate) fn header(token: &str) -> Result<(Algorithm, Option<String>), String> {
    if token.len() > MAX_TOKEN {
        return Err(format!("the ID token is longer than {MAX_TOKEN} bytes"));
    }
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("the ID token is malformed: {e}"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(format!(
            "the ID token is signed with {:?}; the console accepts RS256 and ES256",
            header.alg
        ));
    }
    Ok((header.alg, header.kid))
}

/// The claims the console reads.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    /// A boolean by the specification; some providers send `"true"`.
    #[serde(default)]
    pub email_verified: Option<serde_json::Value>,
    #[serde(default)]
    nonce: Option<String>,
    iat: i64,
    #[serde(default)]
    azp: Option<String>,
}

impl Claims {
    /// The email, unless the provider says it is not verified.
    pub fn email(&self) -> Option<&str> {
        let unverified = match &self.email_verified {
            Some(serde_json::Value::Bool(verified)) => !verified,
            Some(serde_json::Value::String(verified)) => verified.eq_ignore_ascii_case("false"),
            _ => false,
        };
        self.email
            .as_deref()
            .filter(|email| !unverified && !email.is_empty())
    }
}

/// What the token must say.
pub(crate) struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// Checks the token with `key` (already chosen for its header) against `expected`.
pub(crate) fn validate(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
    expected: &Expected<'_>,
) -> Result<Claims, String> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY.as_secs();
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|e| format!("the ID token is not valid: {e}"))?
        .claims;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    if claims.iat > now + LEEWAY.as_secs() as i64 {
        return Err("the ID token was issued in the future: check the clocks".into());
    }
    if claims.iat < now - (MAX_AGE + LEEWAY).as_secs() as i64 {
        return Err("the ID token was issued too long ago".into());
    }
    if claims
        .azp
        .as_deref()
        .is_some_and(|azp| azp != expected.client_id)
    {
        return Err("the ID token was issued to another client (`azp`)".into());
    }
    let nonce = claims.nonce.as_deref().unwrap_or("");
    if nonce.is_empty() || !bool::from(nonce.as_bytes().ct_eq(expected.nonce.as_bytes())) {
        return Err("the ID token's nonce is not this sign-in's".into());
    }
    if claims.sub.is_empty() {
        return Err("the ID token names no subject".into());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    /// A P-256 key pair made with ring, and its public JWK.
    fn ec_key(kid: &str) -> (EncodingKey, serde_json::Value) {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn claims(changes: serde_json::Value) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "iss": "https://idp.example.com", "aud": "portcullis", "sub": "s-1",
            "email": "ada@example.com", "email_verified": true, "nonce": "n-1",
            "iat": now(), "exp": now() + 300,
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    const EXPECTED: Expected<'static> = Expected {
        issuer: "https://idp.example.com",
        client_id: "portcullis",
        nonce: "n-1",
    };

    fn check(
        signing: &EncodingKey,
        kid: &str,
        keys: &Keys,
        claims: serde_json::Value,
    ) -> Result<Claims, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &claims, signing).unwrap();
        let (alg, kid) = header_of(&token)?;
        let key = keys.find(alg, kid.as_deref()).ok_or("no key")?;
        validate(&token, alg, key, &EXPECTED)
    }

    fn header_of(token: &str) -> Result<(Algorithm, Option<String>), String> {
        super::header(token)
    }

    #[test]
    fn a_good_token_passes_and_every_wrong_claim_fails() {
        let (signing, jwk) = ec_key("k1");
        let (other, _) = ec_key("k1");
        let keys =
            Keys::from_set(&serde_json::json!({ "keys": [jwk, {"kty": "oct", "k": "c2VjcmV0"}] }))
                .unwrap();
        let good = check(&signing, "k1", &keys, claims(serde_json::json!({}))).unwrap();
        assert_eq!(
            (good.sub.as_str(), good.email()),
            ("s-1", Some("ada@example.com"))
        );

        let unverified = check(
            &signing,
            "k1",
            &keys,
            claims(serde_json::json!({"email_verified": false})),
        )
        .unwrap();
        assert_eq!(unverified.email(), None, "an unverified email is not used");

        let refused = |claims: serde_json::Value| check(&signing, "k1", &keys, claims).unwrap_err();
        assert!(
            refused(claims(
                serde_json::json!({"iss": "https://evil.example.com"})
            ))
            .contains("not valid")
        );
        assert!(refused(claims(serde_json::json!({"aud": "someone-else"}))).contains("not valid"));
        assert!(refused(claims(serde_json::json!({"exp": now() - 120}))).contains("not valid"));
        assert!(refused(claims(serde_json::json!({"nonce": "n-2"}))).contains("nonce"));
        assert!(refused(claims(serde_json::json!({"nonce": null}))).contains("nonce"));
        assert!(refused(claims(serde_json::json!({"iat": now() + 600}))).contains("future"));
        assert!(refused(claims(serde_json::json!({"iat": now() - 3600}))).contains("long ago"));
        assert!(refused(claims(serde_json::json!({"azp": "someone-else"}))).contains("azp"));
        assert!(
            check(&other, "k1", &keys, claims(serde_json::json!({})))
                .unwrap_err()
                .contains("not valid"),
            "another key's signature"
        );
        assert!(
            check(&signing, "k2", &keys, claims(serde_json::json!({}))).is_err(),
            "unknown kid"
        );
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused() {
        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(serde_json::json!({})),
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(header_of(&hmac).unwrap_err().contains("HS256"));
        // alg `none`: jsonwebtoken has no such algorithm, so the header itself is refused.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", base64_claims());
        assert!(header_of(&none).is_err());
    }

    fn base64_claims() -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(claims(serde_json::json!({})).to_string())
    }
}
