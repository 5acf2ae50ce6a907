//! WXBizMsgCrypt: signing, encrypting and decrypting WeCom callbacks (API-FACTS §10).
//!
//! The algorithm, in the order [`CallbackCrypto::decrypt_message`] checks it:
//!
//! 1. `msg_signature == hex(sha1(sort([token, timestamp, nonce, encrypt]).concat()))`
//!    ([`CryptoError::Signature`]);
//! 2. `encrypt` is standard base64 ([`CryptoError::Base64`]);
//! 3. AES-256-CBC with IV = the first 16 key bytes, ciphertext a non-empty multiple of 16
//!    ([`CryptoError::Aes`]);
//! 4. PKCS#7 padding to **32-byte** blocks, pad 1..=32 ([`CryptoError::Padding`]) — a crypto
//!    crate's 16-byte PKCS#7 rejects real WeCom traffic, so padding is done by hand here;
//! 5. `random(16) || len(4, big-endian) || msg || receive_id` ([`CryptoError::Length`]);
//! 6. `receive_id` equals the configured corpid ([`CryptoError::ReceiveId`]) unless the
//!    configured one is empty (the official Go sample's rule, for personal 3rd-party apps).
//!
//! The signature is checked before anything is decrypted: CBC has no integrity of its own, so
//! the SHA-1 signature over the ciphertext is what makes tampering detectable.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

use crate::secret::Secret;
use crate::xml;

#[cfg(test)]
mod tests;

/// WeCom pads to 32-byte blocks, not AES's 16 (API-FACTS §10).
const PAD_BLOCK: usize = 32;
/// Bytes of random prefix before the length field.
const RANDOM_LEN: usize = 16;

/// Which check a callback failed. Each maps to an official sample error code ([`Self::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// `msg_signature` does not match the SHA-1 over token, timestamp, nonce and ciphertext.
    #[error("callback signature mismatch")]
    Signature,
    /// The ciphertext is not valid base64.
    #[error("callback ciphertext is not valid base64")]
    Base64,
    /// The ciphertext length is not a non-empty multiple of the AES block size.
    #[error("callback ciphertext is not a whole number of AES blocks")]
    Aes,
    /// The decrypted PKCS#7 padding is not 1..=32 equal bytes.
    #[error("callback plaintext has invalid padding")]
    Padding,
    /// The decrypted buffer is shorter than its header or its declared message length.
    #[error("callback plaintext length field is inconsistent")]
    Length,
    /// The trailing receive id (corpid / suiteid) is not the configured one.
    #[error("callback receive id does not match")]
    ReceiveId,
    /// The EncodingAESKey is not 43 base64 characters decoding to 32 bytes.
    #[error("EncodingAESKey must be 43 base64 characters")]
    Key,
    /// The envelope XML is malformed, has a DOCTYPE/entities, or lacks `Encrypt`.
    #[error("callback XML rejected: {0}")]
    Xml(String),
    /// The decrypted message or receive id is not UTF-8.
    #[error("callback plaintext is not UTF-8")]
    Utf8,
}

impl CryptoError {
    /// The error code the official WXBizMsgCrypt samples use for this failure.
    pub fn code(&self) -> i32 {
        match self {
            Self::Signature => -40001,
            Self::Xml(_) => -40002,
            Self::Key => -40004,
            Self::ReceiveId => -40005,
            Self::Aes | Self::Padding => -40007,
            Self::Length | Self::Utf8 => -40008,
            Self::Base64 => -40010,
        }
    }
}

/// The decrypted parts of one ciphertext, before the receive-id check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The 16-byte random prefix (ASCII in the samples, arbitrary bytes in real traffic).
    pub random: [u8; RANDOM_LEN],
    /// The message: an echostr during URL verification, else the event XML.
    pub message: String,
    /// The trailing receive id: the corpid for self-built apps.
    pub receive_id: String,
}

/// The outer `<xml>` WeCom POSTs to a callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ToUserName`: the corpid (the suiteid for 3rd-party suites); absent in passive replies.
    pub to_user_name: Option<String>,
    /// `Encrypt`: the base64 ciphertext the signature covers.
    pub encrypt: String,
    /// `AgentID`: the receiving app; may be missing or empty (API-FACTS §14.13).
    pub agent_id: Option<String>,
}

/// A callback ready to deliver: POST `body_xml` to `URL?{query()}`. Used by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCallback {
    /// Value of the `msg_signature` query parameter.
    pub msg_signature: String,
    /// Value of the `timestamp` query parameter.
    pub timestamp: String,
    /// Value of the `nonce` query parameter.
    pub nonce: String,
    /// The POST body: `<xml><ToUserName/><Encrypt/><AgentID/></xml>`.
    pub body_xml: String,
}

impl SealedCallback {
    /// `msg_signature=…&timestamp=…&nonce=…`, URL-encoded.
    pub fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("msg_signature", &self.msg_signature)
            .append_pair("timestamp", &self.timestamp)
            .append_pair("nonce", &self.nonce)
            .finish()
    }
}

/// One app's callback configuration: Token, EncodingAESKey and the receive id (corpid).
#[derive(Clone)]
pub struct CallbackCrypto {
    token: Secret,
    key: [u8; 32],
    /// The first 16 key bytes (API-FACTS §10), kept apart so no call site slices the key.
    iv: [u8; 16],
    receive_id: String,
}

impl std::fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("token", &self.token)
            .field("key", &"***")
            .field("receive_id", &self.receive_id)
            .finish()
    }
}

/// Decodes an EncodingAESKey: 43 characters of the standard alphabet plus an implied `=`.
///
/// Lenient about the two unused low bits of the last character (most published keys, e.g.
/// the official sample's `…B2C`, set them, and strict decoders reject that), strict about
/// everything else: exactly 43 characters, no `=` of its own, 32 bytes out.
pub fn decode_encoding_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != 43
        || !encoding_aes_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(CryptoError::Key);
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = LENIENT
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CryptoError::Key)?;
    bytes.try_into().map_err(|_| CryptoError::Key)
}

/// `hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`, lowercase.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part.as_bytes());
    }
    hex::encode(sha.finalize())
}

/// Parses the outer callback XML, refusing DOCTYPEs and entities.
pub fn parse_envelope(body_xml: &str) -> Result<Envelope, CryptoError> {
    let root = xml::parse(body_xml).map_err(|e| CryptoError::Xml(e.to_string()))?;
    let encrypt = root
        .child_text("Encrypt")
        .ok_or_else(|| CryptoError::Xml("no <Encrypt> element".into()))?
        .trim()
        .to_owned();
    let non_empty = |name: &str| {
        root.child_text(name)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Envelope {
        to_user_name: non_empty("ToUserName"),
        encrypt,
        agent_id: non_empty("AgentID"),
    })
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl CallbackCrypto {
    /// Builds the crypto for one app. `receive_id` is the corpid for self-built apps (the
    /// suiteid for 3rd-party suites; empty skips the check).
    pub fn new(
        token: impl Into<Secret>,
        encoding_aes_key: &str,
        receive_id: impl Into<String>,
    ) -> Result<Self, CryptoError> {
        let key = decode_encoding_aes_key(encoding_aes_key)?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&key[..16]);
        Ok(Self {
            token: token.into(),
            key,
            iv,
            receive_id: receive_id.into(),
        })
    }

    /// The receive id ciphertexts are checked against and produced with.
    pub fn receive_id(&self) -> &str {
        &self.receive_id
    }

    /// The signature WeCom would send for `encrypt` at this timestamp and nonce.
    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(self.token.expose(), timestamp, nonce, encrypt)
    }

    /// Checks `msg_signature` (case-insensitively, in constant time).
    pub fn verify_signature(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypt);
        let given = msg_signature.trim().to_ascii_lowercase();
        if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            Ok(())
        } else {
            Err(CryptoError::Signature)
        }
    }

    /// URL verification (the GET WeCom sends when the callback URL is saved): checks the
    /// signature over the (URL-decoded) `echostr` and returns the plaintext to answer with.
    pub fn verify_url(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        echostr: &str,
    ) -> Result<String, CryptoError> {
        self.verify_signature(msg_signature, timestamp, nonce, echostr)?;
        self.decrypt(echostr)
    }

    /// Verifies and decrypts a POSTed callback body; returns the plaintext event XML.
    pub fn decrypt_message(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        body_xml: &str,
    ) -> Result<String, CryptoError> {
        let envelope = parse_envelope(body_xml)?;
        self.verify_signature(msg_signature, timestamp, nonce, &envelope.encrypt)?;
        self.decrypt(&envelope.encrypt)
    }

    /// Encrypts `plaintext` and wraps it the way the official `EncryptMsg` does (the passive
    /// reply envelope): `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
    pub fn encrypt_message(&self, plaintext: &str, timestamp: &str, nonce: &str) -> String {
        let encrypt = self.encrypt(plaintext);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        let mut out = String::from("<xml>");
        xml::write_cdata(&mut out, "Encrypt", &encrypt);
        xml::write_cdata(&mut out, "MsgSignature", &msg_signature);
        xml::write_plain(&mut out, "TimeStamp", timestamp);
        xml::write_cdata(&mut out, "Nonce", nonce);
        out.push_str("</xml>");
        out
    }

    /// Encrypts `plaintext` into the request WeCom POSTs to a callback URL: the body
    /// `<xml><ToUserName/><Encrypt/><AgentID/></xml>` and the query parameters.
    /// `agent_id` `None` leaves `AgentID` out.
    pub fn seal_callback(
        &self,
        plaintext: &str,
        timestamp: &str,
        nonce: &str,
        agent_id: Option<&str>,
    ) -> SealedCallback {
        let encrypt = self.encrypt(plaintext);
        let msg_signature = self.signature(timestamp, nonce, &encrypt);
        let mut body = String::from("<xml>");
        xml::write_cdata(&mut body, "ToUserName", &self.receive_id);
        xml::write_cdata(&mut body, "Encrypt", &encrypt);
        if let Some(agent_id) = agent_id {
            xml::write_cdata(&mut body, "AgentID", agent_id);
        }
        body.push_str("</xml>");
        SealedCallback {
            msg_signature,
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            body_xml: body,
        }
    }

    /// Encrypts `plaintext` with a fresh random prefix; returns base64 ciphertext.
    pub fn encrypt(&self, plaintext: &str) -> String {
        let random: [u8; RANDOM_LEN] = rand::random();
        self.encrypt_with_random(&random, plaintext)
    }

    /// Encrypts with a given random prefix: deterministic, for known-answer tests.
    pub fn encrypt_with_random(&self, random: &[u8; RANDOM_LEN], plaintext: &str) -> String {
        let msg = plaintext.as_bytes();
        let unpadded = RANDOM_LEN + 4 + msg.len() + self.receive_id.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(random);
        // WeCom caps messages far below 4 GiB; saturate rather than wrap just in case.
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(msg);
        buf.extend_from_slice(self.receive_id.as_bytes());
        // `pad` is in 1..=32, so the cast is lossless.
        buf.resize(unpadded + pad, pad as u8);
        let cipher = cbc::Encryptor::<Aes256>::new((&self.key).into(), (&self.iv).into());
        let ciphertext = cipher.encrypt_padded_vec_mut::<NoPadding>(&buf);
        STANDARD.encode(ciphertext)
    }

    /// Decrypts base64 ciphertext and checks the receive id; returns the message.
    /// Does not check any signature: callers holding one use [`Self::decrypt_message`].
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        let decrypted = self.decrypt_raw(encrypt)?;
        if !self.receive_id.is_empty()
            && !constant_time_eq(decrypted.receive_id.as_bytes(), self.receive_id.as_bytes())
        {
            return Err(CryptoError::ReceiveId);
        }
        Ok(decrypted.message)
    }

    /// Decrypts base64 ciphertext into its parts without the receive-id check.
    pub fn decrypt_raw(&self, encrypt: &str) -> Result<Decrypted, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::Base64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::Aes);
        }
        let cipher = cbc::Decryptor::<Aes256>::new((&self.key).into(), (&self.iv).into());
        let plain = cipher
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Aes)?;
        let plain = unpad(plain)?;
        if plain.len() < RANDOM_LEN + 4 {
            return Err(CryptoError::Length);
        }
        let (random, rest) = plain.split_at(RANDOM_LEN);
        let (len, rest) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > rest.len() {
            return Err(CryptoError::Length);
        }
        let (message, receive_id) = rest.split_at(len);
        let mut random_arr = [0u8; RANDOM_LEN];
        random_arr.copy_from_slice(random);
        Ok(Decrypted {
            random: random_arr,
            message: String::from_utf8(message.to_vec()).map_err(|_| CryptoError::Utf8)?,
            receive_id: String::from_utf8(receive_id.to_vec()).map_err(|_| CryptoError::Utf8)?,
        })
    }
}

/// Strips PKCS#7 padding to 32-byte blocks: the last byte says how many, 1..=32, all equal.
fn unpad(plain: &[u8]) -> Result<&[u8], CryptoError> {
    let pad = *plain.last().ok_or(CryptoError::Padding)? as usize;
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return Err(CryptoError::Padding);
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| b as usize != pad) {
        return Err(CryptoError::Padding);
    }
    Ok(body)
}
