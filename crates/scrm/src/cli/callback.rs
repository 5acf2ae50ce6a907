//! `scrm callback decrypt`: an operator's tool for "why does my callback fail". It runs the exact
//! checks scrm's callback endpoint runs and prints the plaintext, or which check failed.

use clap::Args;
use scrm_wecom::crypto::CallbackCrypto;

#[derive(Args)]
pub struct DecryptArgs {
    /// The callback Token configured in WeCom.
    #[arg(long)]
    token: String,
    /// The 43-character EncodingAESKey configured in WeCom.
    #[arg(long = "aes-key")]
    aes_key: String,
    /// The receive id: the corpid for a self-built app.
    #[arg(long = "receive-id")]
    receive_id: String,
    /// `msg_signature` from the callback URL.
    #[arg(long)]
    signature: String,
    /// `timestamp` from the callback URL.
    #[arg(long)]
    timestamp: String,
    /// `nonce` from the callback URL.
    #[arg(long)]
    nonce: String,
    /// `echostr` of a URL verification (GET), already URL-decoded.
    #[arg(long, conflicts_with = "body", required_unless_present = "body")]
    echostr: Option<String>,
    /// A file holding the POSTed XML body of an event callback.
    #[arg(long)]
    body: Option<std::path::PathBuf>,
}

/// Run the checks; Ok(plaintext) or Err(description of the failed check).
pub fn decrypt(args: &DecryptArgs) -> anyhow::Result<String> {
    let crypto = CallbackCrypto::new(args.token.as_str(), &args.aes_key, args.receive_id.as_str())
        .map_err(|e| anyhow::anyhow!("check `key` failed ({}): {e}", e.code()))?;
    let result = match (&args.echostr, &args.body) {
        (Some(echostr), _) => {
            crypto.verify_url(&args.signature, &args.timestamp, &args.nonce, echostr)
        }
        (None, Some(path)) => {
            let body = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            crypto.decrypt_message(&args.signature, &args.timestamp, &args.nonce, &body)
        }
        (None, None) => anyhow::bail!("give --echostr or --body"),
    };
    result.map_err(|e| anyhow::anyhow!("check `{}` failed ({}): {e}", check_name(&e), e.code()))
}

fn check_name(e: &scrm_wecom::crypto::CryptoError) -> &'static str {
    use scrm_wecom::crypto::CryptoError as E;
    match e {
        E::Signature => "signature",
        E::Base64 => "base64",
        E::Aes => "aes",
        E::Padding => "padding",
        E::Length => "length",
        E::ReceiveId => "receive id",
        E::Key => "key",
        E::Xml(_) => "xml",
        E::Utf8 => "utf8",
    }
}
