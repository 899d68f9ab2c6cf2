//! Secrets: Argon2id password hashes, random tokens, session IDs and generated passwords, and
//! the SHA-256 under which tokens and session IDs are stored.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// API tokens start with this, so that they are recognisable in a script or a leak scanner.
pub const TOKEN_PREFIX: &str = "ow_";

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    bytes
}

/// 32 random bytes, base64url: session IDs, CSRF tokens.
pub fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A new API token: `ow_` and 32 random bytes, base64url.
pub fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_secret())
}

/// A generated password: 18 random bytes, base64url (24 characters).
pub fn generate_password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<18>())
}

/// Lowercase hex SHA-256: how tokens and session IDs are stored.
pub fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Refuses passwords that are too short.
pub fn check_rules(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

/// The Argon2id PHC string of a password (default parameters, random salt). Slow on purpose:
/// call from a blocking thread.
pub fn hash(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the PHC string. Slow on purpose: call from a blocking thread.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends the time of a verification for a user who does not exist, so that the answer time
/// does not tell which names exist.
pub fn verify_nobody(password: &str) {
    static DUMMY: LazyLock<String> = LazyLock::new(|| hash("no user has this password"));
    let _ = verify(password, &DUMMY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash("correct horse battery");
        let b = hash("correct horse battery");
        assert!(a.starts_with("$argon2id$"));
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("anything", "not a hash"));
    }

    #[test]
    fn secrets_have_their_shape() {
        let token = new_token();
        assert!(token.starts_with("ow_") && token.len() == 3 + 43);
        assert_ne!(new_token(), token);
        assert_eq!(generate_password().len(), 24);
        assert!(check_rules("short").is_err());
        assert!(check_rules("twelve chars").is_ok());
        assert_eq!(sha256_hex("abc").len(), 64);
    }
}
