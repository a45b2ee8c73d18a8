//! Standard Webhooks signatures: `v1,` and the base64 of HMAC-SHA256 over
//! `<id>.<timestamp>.<body>`, keyed with the secret's decoded bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix Standard Webhooks secrets are written with.
const PREFIX: &str = "whsec_";

/// A signing key.
pub struct Secret(Vec<u8>);

impl Secret {
    /// Reads a secret as Standard Webhooks libraries do: an optional
    /// `whsec_` prefix, then the key in base64.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let encoded = text.strip_prefix(PREFIX).unwrap_or(text);
        match STANDARD.decode(encoded) {
            Ok(key) if !key.is_empty() => Ok(Secret(key)),
            _ => Err(
                "not a Standard Webhooks secret (`whsec_` followed by the key in base64)"
                    .to_owned(),
            ),
        }
    }
}

/// The `v1,<base64>` signature of one delivery.
pub fn sign(secret: &Secret, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's reference
    /// test suite.
    #[test]
    fn matches_the_specification_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn rejects_what_is_not_base64() {
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("").is_err());
    }
}
