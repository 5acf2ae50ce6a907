//! Known-answer vectors from API-FACTS §10.1, round trips and tampering.

use super::*;
use proptest::prelude::*;

const A_TOKEN: &str = "QDG6eK";
const A_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const A_CORP: &str = "wx5823bf96d3bd56c7";
const A_ECHO: &str =
    "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==";

const C_KEY: &str = "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIws";
const C_TOKEN: &str = "kjr2TKI8umCBfVF3wAHk8JiPwma5VBme";
const C_CIPHER: &str =
    "6KmUQuPVu7UhjyVqRdbo5SfcRqaHvbUlKSHFvBV2ZuR6TIlKsygcfeSd1GDplg1C5KSKr6UPHCaC/nIX3ZNt9w==";

const D_TOKEN: &str = "kz7Yx62CH8SaLN";
const D_KEY: &str = "cD0d7jx4tYvVtzqrmh3Dm3QFCXe6f8SlHoMtMh3qQEP";
const D_BODY: &str = "<xml><ToUserName><![CDATA[ww6a112864f8022910]]></ToUserName><Encrypt><![CDATA[EUCt7xMcNiyASzZj0Hjc5yDjFQrCum6AfQ3ntHiUzjGQ51xieKmbvtrZ40/EcB2W/W8yH0n4Lqx48gJl/T9HD/R309I0P/r5pIZucK3lyEn48FYMr4YdE0QdL2jIJ3xkcXUr6uzefzCxG6lMvwpAJaOyVCzN7sRRw47njfxy5EIqU6R9ZBhlTzfdnhhOhK/nTwzrZX3SoGlXFA9OBeZ6ru1NWpXFk76x9DUMe0lcxPPiUqK8ctnQcYXSGUHVqC6DfG7E7mab0OmruNN8cBZY5d3dYOBA4OgaH55Q0AJmUpdT8vNiXpXx+6TxT3TIjySXpDrHVyrsb772aYywgg/Nu4kUmGkALwFZlzhjNegR7wDwb9lr4ERXsSSS8JZ8lbBmaQ3F2Tq584xoPj5rIhXAF734ynm4no1g+SdHiNqR328=]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>";
const D_MSG: &str = "<xml><ToUserName><![CDATA[ww6a112864f8022910]]></ToUserName><FromUserName><![CDATA[foobar]]></FromUserName><CreateTime>1583995625</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[x123]]></Content><MsgId>2018405441</MsgId><AgentID>1000002</AgentID></xml>";

fn random_of(bytes: &[u8]) -> [u8; 16] {
    bytes.try_into().unwrap()
}

#[test]
fn vector_a_key_decodes_leniently_to_the_published_bytes() {
    let key = decode_encoding_aes_key(A_KEY).unwrap();
    assert_eq!(
        hex::encode(key),
        "8d69989bbaabe67328014c194631ad0719b3dca035b64023df292447aab60760"
    );
}

#[test]
fn vector_a_url_verification_answers_the_echo() {
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
    let echo = crypto
        .verify_url(
            "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
            "1409659589",
            "263014780",
            A_ECHO,
        )
        .unwrap();
    assert_eq!(echo, "1616140317555161061");

    let raw = crypto.decrypt_raw(A_ECHO).unwrap();
    assert_eq!(&raw.random, b"c41b64491c2468d0");
    assert_eq!(raw.receive_id, A_CORP);
    // Re-encryption with the same random prefix reproduces the ciphertext bit for bit.
    assert_eq!(
        crypto.encrypt_with_random(&raw.random, "1616140317555161061"),
        A_ECHO
    );
}

#[test]
fn vector_a_url_encoded_echostr_decodes_to_the_same_ciphertext() {
    let query = "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D";
    let params: std::collections::HashMap<_, _> =
        url::form_urlencoded::parse(query.as_bytes()).collect();
    assert_eq!(params["echostr"], A_ECHO);
}

#[test]
fn vector_c_signature_and_decryption() {
    assert_eq!(
        signature(C_TOKEN, "1583940690", "VHh7ymSeb0jc4lSb", C_CIPHER),
        "1ba3cb09c0d2c2b3ed6900d37f91a6efae6cb011"
    );
    let crypto = CallbackCrypto::new(C_TOKEN, C_KEY, "ww6a112864f8022910").unwrap();
    let raw = crypto.decrypt_raw(C_CIPHER).unwrap();
    assert_eq!(&raw.random, b"5QMsYcwjR95t2vmC");
    assert_eq!(raw.message, "94966531020182955848408");
    assert_eq!(raw.receive_id, "ww6a112864f8022910");
    assert_eq!(
        crypto
            .verify_url(
                "1ba3cb09c0d2c2b3ed6900d37f91a6efae6cb011",
                "1583940690",
                "VHh7ymSeb0jc4lSb",
                C_CIPHER
            )
            .unwrap(),
        "94966531020182955848408"
    );
    assert_eq!(
        crypto.encrypt_with_random(&raw.random, &raw.message),
        C_CIPHER
    );
}

#[test]
fn vector_d_post_with_binary_random_prefix() {
    let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, "ww6a112864f8022910").unwrap();
    let msg = crypto
        .decrypt_message(
            "f265ae551b1932727204c3d707628d01376a6940",
            "1583995625",
            "1584392382",
            D_BODY,
        )
        .unwrap();
    assert_eq!(msg, D_MSG);
    assert_eq!(msg.len(), 269);

    let envelope = parse_envelope(D_BODY).unwrap();
    assert_eq!(envelope.to_user_name.as_deref(), Some("ww6a112864f8022910"));
    assert_eq!(envelope.agent_id.as_deref(), Some("1000002"));
    let raw = crypto.decrypt_raw(&envelope.encrypt).unwrap();
    assert_eq!(hex::encode(raw.random), "21e33070c56d1ca4e4fa84ace71334f6");
    assert_eq!(
        crypto.encrypt_with_random(&raw.random, D_MSG),
        envelope.encrypt
    );
}

#[test]
fn vector_e_wechat_crypto_crate() {
    let crypto = CallbackCrypto::new(
        "unused",
        "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aQ",
        "rust",
    )
    .unwrap();
    let cipher = "9s4gMv99m88kKTh/H8IdkNiFGeG9pd7vNWl50fGRWXY=";
    let raw = crypto.decrypt_raw(cipher).unwrap();
    assert_eq!(&raw.random, b"1234567890123456");
    assert_eq!(raw.message, "test");
    assert_eq!(raw.receive_id, "rust");
    assert_eq!(
        crypto.encrypt_with_random(&random_of(b"1234567890123456"), "test"),
        cipher
    );
}

#[test]
fn wrong_receive_id_is_named() {
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, "ww_other").unwrap();
    assert_eq!(crypto.decrypt(A_ECHO), Err(CryptoError::ReceiveId));
    // An empty configured receive id skips the check, like the official Go sample.
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, "").unwrap();
    assert_eq!(crypto.decrypt(A_ECHO).unwrap(), "1616140317555161061");
}

#[test]
fn bad_keys_are_refused() {
    for key in [
        "",
        &A_KEY[..42],
        &format!("{A_KEY}="),
        &format!("{}=", &A_KEY[..42]),
        &format!("{}!", &A_KEY[..42]),
        &format!("{A_KEY}A"),
    ] {
        assert_eq!(
            CallbackCrypto::new("t", key, "c").unwrap_err(),
            CryptoError::Key,
            "{key}"
        );
    }
}

#[test]
fn each_failed_check_is_named() {
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
    assert_eq!(
        crypto.verify_url("00", "1409659589", "263014780", A_ECHO),
        Err(CryptoError::Signature)
    );
    assert_eq!(crypto.decrypt("not base64!"), Err(CryptoError::Base64));
    assert_eq!(crypto.decrypt("AAAA"), Err(CryptoError::Aes));
    assert_eq!(crypto.decrypt(""), Err(CryptoError::Aes));
    // 32 zero bytes decrypt to noise: the last byte is almost surely not a valid pad run.
    let noise = STANDARD.encode([0u8; 32]);
    assert!(matches!(
        crypto.decrypt(&noise),
        Err(CryptoError::Padding | CryptoError::Length)
    ));
    assert_eq!(CryptoError::Signature.code(), -40001);
    assert_eq!(CryptoError::ReceiveId.code(), -40005);
}

#[test]
fn short_and_overlong_length_fields_are_length_errors() {
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
    let encrypt_raw = |plain: &[u8]| {
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + pad, pad as u8);
        let cipher = cbc::Encryptor::<Aes256>::new((&crypto.key).into(), (&crypto.iv).into());
        STANDARD.encode(cipher.encrypt_padded_vec_mut::<NoPadding>(&buf))
    };
    assert_eq!(
        crypto.decrypt(&encrypt_raw(&[1u8; 10])),
        Err(CryptoError::Length)
    );
    let mut overlong = vec![0u8; 16];
    overlong.extend_from_slice(&1000u32.to_be_bytes());
    overlong.extend_from_slice(b"short");
    assert_eq!(
        crypto.decrypt(&encrypt_raw(&overlong)),
        Err(CryptoError::Length)
    );
}

#[test]
fn envelope_xml_with_doctype_or_entities_is_refused() {
    let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, "ww6a112864f8022910").unwrap();
    let with_doctype =
        format!("<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{D_BODY}");
    let err = crypto
        .decrypt_message(
            "f265ae551b1932727204c3d707628d01376a6940",
            "1583995625",
            "1584392382",
            &with_doctype,
        )
        .unwrap_err();
    assert!(matches!(err, CryptoError::Xml(_)));
    let with_entity = D_BODY.replace(
        "<AgentID><![CDATA[1000002]]></AgentID>",
        "<AgentID>&x;</AgentID>",
    );
    assert!(matches!(
        parse_envelope(&with_entity),
        Err(CryptoError::Xml(_))
    ));
    assert!(matches!(
        parse_envelope("<xml><ToUserName>a</ToUserName></xml>"),
        Err(CryptoError::Xml(_))
    ));
}

#[test]
fn envelope_without_agent_id_parses() {
    let envelope = parse_envelope("<xml><ToUserName><![CDATA[ww1]]></ToUserName><Encrypt><![CDATA[abc]]></Encrypt><AgentID><![CDATA[]]></AgentID></xml>").unwrap();
    assert_eq!(envelope.agent_id, None);
    let envelope = parse_envelope("<xml><Encrypt>abc</Encrypt></xml>").unwrap();
    assert_eq!((envelope.to_user_name, envelope.agent_id), (None, None));
}

#[test]
fn sealed_callbacks_and_passive_replies_open_again() {
    let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, "ww6a112864f8022910").unwrap();
    let sealed = crypto.seal_callback(D_MSG, "1700000000", "n0nce", Some("1000002"));
    assert_eq!(
        crypto
            .decrypt_message(
                &sealed.msg_signature,
                &sealed.timestamp,
                &sealed.nonce,
                &sealed.body_xml
            )
            .unwrap(),
        D_MSG
    );
    assert!(sealed.query().starts_with("msg_signature="));
    let envelope = parse_envelope(&sealed.body_xml).unwrap();
    assert_eq!(envelope.agent_id.as_deref(), Some("1000002"));

    let reply = crypto.encrypt_message("<xml>hi</xml>", "1700000001", "abc");
    let root = crate::xml::parse(&reply).unwrap();
    let sig = root.child_text("MsgSignature").unwrap();
    assert_eq!(root.child_text("TimeStamp"), Some("1700000001"));
    assert_eq!(
        crypto
            .decrypt_message(sig, "1700000001", "abc", &reply)
            .unwrap(),
        "<xml>hi</xml>"
    );
}

#[test]
fn debug_output_hides_token_and_key() {
    let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
    let debug = format!("{crypto:?}");
    assert!(
        !debug.contains(A_TOKEN) && !debug.contains("141"),
        "{debug}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_message_round_trips(msg in ".{0,700}", corp in "[a-z0-9]{0,24}", ts in "[0-9]{10}", nonce in "[a-zA-Z0-9]{1,16}") {
        let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, corp.clone()).unwrap();
        let sealed = crypto.seal_callback(&msg, &ts, &nonce, None);
        prop_assert_eq!(crypto.decrypt_message(&sealed.msg_signature, &ts, &nonce, &sealed.body_xml).unwrap(), msg.clone());
        let raw = crypto.decrypt_raw(&crypto.encrypt(&msg)).unwrap();
        prop_assert_eq!(raw.message, msg);
        prop_assert_eq!(raw.receive_id, corp);
    }

    #[test]
    fn every_padding_length_round_trips(len in 0usize..200) {
        let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
        let msg = "x".repeat(len);
        prop_assert_eq!(crypto.decrypt(&crypto.encrypt(&msg)).unwrap(), msg);
    }

    #[test]
    fn tampering_with_the_ciphertext_is_rejected(msg in ".{0,300}", index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9+/=]") {
        let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, "ww6a112864f8022910").unwrap();
        let sealed = crypto.seal_callback(&msg, "1700000000", "nonce", Some("1"));
        let encrypt = parse_envelope(&sealed.body_xml).unwrap().encrypt;
        let i = index.index(encrypt.len());
        prop_assume!(encrypt.as_bytes()[i] != replacement.as_bytes()[0]);
        let mut tampered = encrypt.clone().into_bytes();
        tampered[i] = replacement.as_bytes()[0];
        let tampered = String::from_utf8(tampered).unwrap();
        let body = sealed.body_xml.replace(&encrypt, &tampered);
        prop_assert_eq!(
            crypto.decrypt_message(&sealed.msg_signature, "1700000000", "nonce", &body),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn tampering_with_the_signature_is_rejected(index in 0usize..40, digit in "[0-9a-f]") {
        let crypto = CallbackCrypto::new(D_TOKEN, D_KEY, "ww6a112864f8022910").unwrap();
        let sig = "f265ae551b1932727204c3d707628d01376a6940";
        prop_assume!(&sig[index..=index] != digit.as_str());
        let tampered = format!("{}{}{}", &sig[..index], digit, &sig[index + 1..]);
        prop_assert_eq!(
            crypto.decrypt_message(&tampered, "1583995625", "1584392382", D_BODY),
            Err(CryptoError::Signature)
        );
    }

    #[test]
    fn arbitrary_ciphertext_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let crypto = CallbackCrypto::new(A_TOKEN, A_KEY, A_CORP).unwrap();
        let _ = crypto.decrypt(&STANDARD.encode(&bytes));
        let _ = crypto.decrypt(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_envelopes_never_panic(body in ".{0,300}") {
        let _ = parse_envelope(&body);
    }
}
