//! Claim codes: the short, unguessable credential of one order's claim page and the reference a
//! checkout passes back (`client_reference_id`). The matcher derives an order's code with a keyed
//! hash (HMAC-SHA256 of drop id and order id under the deployment's claim secret, first 80 bits),
//! so every outcome of the order — and every matcher, and a replay — carries the same code, and
//! nobody without the secret can compute or guess one. Codes are lower-case Crockford base32:
//! letters and digits only, which survive Stripe's `client_reference_id` filter untouched.

use hmac::{Hmac, Mac};
use rand::RngCore;
use redis::aio::ConnectionLike;
use sha2::Sha256;

/// Characters of a code (Crockford's base32, lower case: no i, l, o, u).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Length of a code: 16 characters of 5 bits = 80 bits.
pub const CODE_LEN: usize = 16;

/// The key claim codes are derived with (`DROPLINE_CLAIM_SECRET`, or one kept in Redis).
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimSecret(Vec<u8>);

impl std::fmt::Debug for ClaimSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClaimSecret(hidden)")
    }
}

impl ClaimSecret {
    /// A secret from configured bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The code of `order_id` in `drop_id` (the drop the outcome names, not a shard).
    pub fn code(&self, drop_id: &str, order_id: &str) -> ClaimCode {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(drop_id.as_bytes());
        mac.update(b"\n");
        mac.update(order_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        // 80 bits = the first 10 bytes, 5 bits per character.
        let mut bits: u128 = 0;
        for byte in &digest[..10] {
            bits = (bits << 8) | u128::from(*byte);
        }
        let code =
            (0..CODE_LEN).rev().map(|i| char::from(ALPHABET[((bits >> (5 * i)) & 31) as usize])).collect();
        ClaimCode(code)
    }

    /// The deployment's shared secret kept in Redis: created once (32 random bytes, `SET NX`) by
    /// whichever process asks first, read by all others, so every matcher derives the same codes.
    /// It lives at [`crate::keys::Keyspace::claim_secret`], one per deployment.
    pub async fn shared<C: ConnectionLike>(
        conn: &mut C,
        keyspace: &crate::keys::Keyspace,
    ) -> Result<Self, redis::RedisError> {
        let key = keyspace.claim_secret();
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        let _: Option<String> = redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async(conn).await?;
        let kept: String = redis::cmd("GET").arg(&key).query_async(conn).await?;
        Ok(Self(kept.into_bytes()))
    }
}

/// A claim code, checked: exactly [`CODE_LEN`] characters of the code alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClaimCode(String);

/// Text that is not a claim code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a claim code is {CODE_LEN} letters and digits")]
pub struct NotAClaimCode;

impl ClaimCode {
    /// Checks `text` (case-insensitive, as people may retype it).
    pub fn parse(text: &str) -> Result<Self, NotAClaimCode> {
        let code = text.trim().to_ascii_lowercase();
        if code.len() == CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b)) {
            Ok(Self(code))
        } else {
            Err(NotAClaimCode)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The path of a claim page on the console (`/c/<code>`).
pub const PAGE_PREFIX: &str = "/c/";

/// The claim page's address for a buyer: `public_url` (`Settings::public_url`) + `/c/<code>`.
pub fn link(public_url: &str, code: &str) -> String {
    format!("{public_url}{PAGE_PREFIX}{code}")
}

impl std::fmt::Display for ClaimCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_per_order_and_differ_between_orders_and_secrets() {
        let secret = ClaimSecret::new("s3cret");
        let a = secret.code("fall", "twitch:m-1");
        assert_eq!(a, secret.code("fall", "twitch:m-1"));
        assert_eq!(a.as_str().len(), CODE_LEN);
        assert_ne!(a, secret.code("fall", "twitch:m-2"));
        assert_ne!(a, secret.code("spring", "twitch:m-1"));
        assert_ne!(a, ClaimSecret::new("other").code("fall", "twitch:m-1"));
        assert_eq!(ClaimCode::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(ClaimCode::parse(&a.as_str().to_uppercase()), Ok(a));
    }

    #[test]
    fn only_codes_parse() {
        for bad in
            ["", "short", "0123456789abcdefg", "0123456789abcdei", "0123456789abcd:f", "../../etc/passwd"]
        {
            assert_eq!(ClaimCode::parse(bad), Err(NotAClaimCode), "{bad}");
        }
    }

    proptest::proptest! {
        /// Every code is CODE_LEN characters Stripe keeps (letters and digits).
        #[test]
        fn every_code_survives_stripe(order in "\\PC{1,60}") {
            let code = ClaimSecret::new("k").code("d", &order);
            proptest::prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_alphanumeric()));
            proptest::prop_assert_eq!(ClaimCode::parse(code.as_str()), Ok(code));
        }
    }
}
