//! scrm-wecom: everything scrm needs to talk to WeCom (企业微信), without a database.
//!
//! * [`client`] — [`WeComClient`] (HTTP pool, token cache, rate limiter; clone freely) and
//!   [`AppClient`] (one corp's app credentials) with a typed method per WeCom API; token
//!   caching with single-flight refresh ([`client::token`]), outbound rate limiting
//!   ([`client::ratelimit`]), retries per errcode, and [`WeComError`] ([`client::error`]).
//! * [`crypto`] — WXBizMsgCrypt: callback signature, AES-256-CBC with 32-byte PKCS#7,
//!   URL verification, sealing callbacks (for the simulator) and opening them.
//! * [`events`] — typed `change_external_contact` / `change_external_chat` /
//!   `change_external_tag` events parsed from the decrypted XML and rendered back to it;
//!   anything else is kept as [`events::Event::Unknown`].
//! * [`secret`] — [`Secret`], a string whose `Debug`/`Display` never print it.

pub mod client;
pub mod crypto;
pub mod events;
pub mod secret;
mod xml;

pub use client::{AppClient, ClientConfig, RetryConfig, WeComClient, WeComError};
pub use crypto::{CallbackCrypto, CryptoError};
pub use events::{CallbackEvent, Event, parse_event};
pub use secret::Secret;
pub use xml::XmlError;
