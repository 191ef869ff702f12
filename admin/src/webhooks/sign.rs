//! Standard Webhooks signatures: `v1,` + base64 of HMAC-SHA256(key, `{id}.{timestamp}.{body}`),
//! the key being the base64-decoded part of the `whsec_` secret.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use pdp_service::secret::RandomFailed;

/// What every signing secret starts with, as the specification's libraries expect.
pub const SECRET_PREFIX: &str = "whsec_";

/// Bytes of a signing key: 32, within the specification's 24 to 64.
const KEY_BYTES: usize = 32;

/// The `webhook-signature` header of `body` sent as message `id` at `timestamp` (Unix
/// seconds).
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// A new signing key and its secret as shown to the admin (once).
pub(crate) fn new_secret() -> Result<(Vec<u8>, String), RandomFailed> {
    let key = pdp_service::secret::random(KEY_BYTES)?;
    let secret = format!("{SECRET_PREFIX}{}", STANDARD.encode(&key));
    Ok((key, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries (`standardwebhooks` test
    /// suites): secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, message
    /// `msg_p5jXN8AQM9LWM0D4loKWxJek`, timestamp 1614265330, body `{"test": 2432232314}`.
    #[test]
    fn matches_the_reference_example() {
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signed = signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_carry_their_key() {
        let (key, secret) = new_secret().unwrap();
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(STANDARD.decode(encoded).unwrap(), key);
        assert_eq!(key.len(), 32);
    }
}
