//! WeCom secrets at rest: AES-256-GCM under one master key per process, and masking for
//! responses.
//!
//! The key comes from `SCRM_MASTER_KEY` (64 hex characters or base64 of 32 bytes) or, when that is
//! not set, from a key file (`SCRM_MASTER_KEY_FILE`, default `data/master.key`) created with a
//! random key on first use, readable by the owner only. Losing the key makes stored secrets
//! unreadable (re-enter them); that is the point of keeping it out of the database.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::config::Config;

/// A loaded master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

fn parse_key(raw: &str) -> anyhow::Result<[u8; 32]> {
    let raw = raw.trim();
    let bytes = if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(raw).context("hex")?
    } else {
        B64.decode(raw)
            .context("neither 64 hex characters nor base64")?
    };
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the master key must be 32 bytes"))
}

/// Keys already read, by source, so a request does not read the key file each time (tests run
/// many apps with different keys in one process, hence a map and not one global).
fn cache() -> &'static Mutex<HashMap<String, [u8; 32]>> {
    static CACHE: OnceLock<Mutex<HashMap<String, [u8; 32]>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

impl MasterKey {
    /// The key this process uses: `SCRM_MASTER_KEY`, else the key file (created when missing).
    pub fn load(config: &Config) -> anyhow::Result<MasterKey> {
        let ic = &config.integration;
        let source = match &ic.master_key {
            Some(k) => format!("env:{}", hex::encode(sha2_of(k.expose()))),
            None => format!("file:{}", ic.master_key_file.display()),
        };
        if let Some(k) = cache().lock().ok().and_then(|c| c.get(&source).copied()) {
            return Ok(MasterKey(k));
        }
        let key = match &ic.master_key {
            Some(k) => parse_key(k.expose()).context("SCRM_MASTER_KEY")?,
            None => read_or_create(&ic.master_key_file)?,
        };
        if let Ok(mut c) = cache().lock() {
            c.insert(source, key);
        }
        Ok(MasterKey(key))
    }

    /// Encrypt: base64 of a random 12-byte nonce followed by the ciphertext and tag.
    pub fn encrypt(&self, plaintext: &str) -> anyhow::Result<String> {
        let cipher = Aes256Gcm::new_from_slice(&self.0).context("master key")?;
        let nonce_bytes: [u8; 12] = rand::random();
        let ct = cipher
            .encrypt(&Nonce::from(nonce_bytes), plaintext.as_bytes())
            .map_err(|_| anyhow::anyhow!("encrypting a secret failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend(ct);
        Ok(B64.encode(out))
    }

    /// Decrypt what [`MasterKey::encrypt`] produced; fails under another key.
    pub fn decrypt(&self, stored: &str) -> anyhow::Result<String> {
        let bytes = B64.decode(stored).context("stored secret is not base64")?;
        if bytes.len() < 12 + 16 {
            bail!("stored secret is too short");
        }
        let cipher = Aes256Gcm::new_from_slice(&self.0).context("master key")?;
        let (nonce, ct) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().context("nonce")?;
        let pt = cipher.decrypt(&Nonce::from(nonce), ct).map_err(|_| {
            anyhow::anyhow!(
                "a stored WeCom secret cannot be decrypted: was the master key changed?"
            )
        })?;
        String::from_utf8(pt).context("stored secret is not UTF-8")
    }
}

fn sha2_of(s: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).into()
}

fn read_or_create(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            return parse_key(&text).with_context(|| format!("master key file {}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let key: [u8; 32] = rand::random();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(hex::encode(key).as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the master key for WeCom secrets");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            parse_key(&text).with_context(|| format!("master key file {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// A secret as responses show it: the first and last two characters of a long one, else `***`.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "***".into();
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}***{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let k = MasterKey([7; 32]);
        let c = k.encrypt("s3cret").unwrap();
        assert!(!c.contains("s3cret"));
        assert_eq!(k.decrypt(&c).unwrap(), "s3cret");
        assert_ne!(k.encrypt("s3cret").unwrap(), c, "fresh nonce each time");
        assert!(MasterKey([8; 32]).decrypt(&c).is_err());
    }

    #[test]
    fn masks_never_show_the_middle() {
        assert_eq!(mask("short"), "***");
        assert_eq!(mask("abcdefghijklmnop"), "ab***op");
    }

    #[test]
    fn keys_parse_from_hex_or_base64() {
        assert_eq!(parse_key(&"00".repeat(32)).unwrap(), [0; 32]);
        assert_eq!(parse_key(&B64.encode([1u8; 32])).unwrap(), [1; 32]);
        assert!(parse_key("abc").is_err());
    }
}
