//! Password hashing with argon2id (the `argon2` crate's defaults, OWASP's recommendation).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

/// The shortest password accepted.
pub const MIN_LEN: usize = 8;

/// Hash a password for storage.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// Check a password against a stored hash. A malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a password nobody has, verified when the user does not exist, so a login for an
/// unknown name takes as long as one for a known name.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("no-such-user-password").unwrap_or_default())
}

/// Why a new password is refused, if it is.
pub fn check_strength(password: &str) -> Option<String> {
    if password.chars().count() < MIN_LEN {
        return Some(format!("must be at least {MIN_LEN} characters"));
    }
    if password.chars().count() > 128 {
        return Some("must be at most 128 characters".into());
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = super::hash("correct horse").unwrap();
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong horse", &h));
        assert!(!super::verify("correct horse", "not a hash"));
    }
}
