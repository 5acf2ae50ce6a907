//! The callback decryptor on arbitrary input, three ways: the raw POST body as an attacker sends
//! it (envelope XML, then signature, then AES and padding); the same body with a *correct*
//! signature over whatever `<Encrypt>` it holds, so the input reaches the decryption and
//! padding checks; and arbitrary plaintext sealed with the right key, so it reaches the event
//! XML parser behind a valid crypto layer. Nothing may panic; a plaintext that comes back must
//! be the one sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scrm_wecom::CallbackEvent;
use scrm_wecom::crypto::{CallbackCrypto, parse_envelope};

const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wwfuzz0000000001";

fuzz_target!(|data: &[u8]| {
    let crypto = CallbackCrypto::new("fuzztoken", KEY, CORP.to_string()).expect("key");
    let text = String::from_utf8_lossy(data);
    // 1. As sent, with a made-up signature.
    let _ = crypto.decrypt_message("0000000000000000000000000000000000000000", "1", "2", &text);
    // 2. Signed correctly over the envelope's ciphertext.
    if let Ok(env) = parse_envelope(&text) {
        let sig = crypto.signature("1700000000", "nonce", &env.encrypt);
        if let Ok(plain) = crypto.decrypt_message(&sig, "1700000000", "nonce", &text) {
            let _ = CallbackEvent::from_xml(&plain);
        }
    }
    let _ = crypto.decrypt(&text);
    // 3. Arbitrary plaintext behind a valid crypto layer.
    let sealed = crypto.seal_callback(&text, "1700000000", "nonce", Some("1000002"));
    let plain = crypto
        .decrypt_message(
            &sealed.msg_signature,
            "1700000000",
            "nonce",
            &sealed.body_xml,
        )
        .expect("a sealed body decrypts");
    assert_eq!(plain, text, "round trip");
    let _ = CallbackEvent::from_xml(&plain);
});
