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
//! * [`device`] — the device gateway protocol (personal WeChat accounts), shared with the
//!   gateway simulator.
//! * [`secret`] — [`Secret`], a string whose `Debug`/`Display` never print it.
//!
//! ## Calling WeCom
//!
//! ```no_run
//! # async fn demo() -> Result<(), scrm_wecom::WeComError> {
//! use std::sync::Arc;
//! use scrm_wecom::client::{ClientConfig, RedisRateLimiter, RedisTokenCache, WeComClient};
//!
//! // One process, or tests against the simulator (`ClientConfig::for_simulator(url)` also
//! // shortens retry delays and lifts the outbound rate limit):
//! let client = WeComClient::in_memory(ClientConfig::for_simulator("http://127.0.0.1:8081"))?;
//!
//! // Many processes: share tokens and rate limits through Redis.
//! let config = ClientConfig::default();
//! let tokens = RedisTokenCache::connect("redis://127.0.0.1:6379", "scrm:wecom").await?;
//! let limits =
//!     RedisRateLimiter::connect("redis://127.0.0.1:6379", "scrm:wecom", config.rate_limits.clone()).await?;
//! let shared = WeComClient::new(config, Arc::new(tokens), Arc::new(limits))?;
//!
//! let app = client.app("wwcorpid", "app-secret"); // cheap; one per (corp, secret)
//! let customers = app.list_all_customers_by_user(app.get_follow_user_list().await?).await?;
//! # let _ = (shared, customers);
//! # Ok(()) }
//! ```
//!
//! ## Receiving callbacks
//!
//! ```
//! use scrm_wecom::{CallbackCrypto, CallbackEvent, Event};
//! let crypto = CallbackCrypto::new("token", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwcorp")?;
//! # let sealed = crypto.seal_callback("<xml><MsgType>event</MsgType><Event>x</Event></xml>", "1", "n", None);
//! # let (msg_signature, timestamp, nonce, body) = (&sealed.msg_signature, "1", "n", &sealed.body_xml);
//! let plaintext = crypto.decrypt_message(msg_signature, timestamp, nonce, body)?;
//! match CallbackEvent::from_xml(&plaintext)?.event {
//!     Event::ExternalContact(e) => { /* e.change, e.user_id, e.external_user_id, e.welcome_code */ }
//!     Event::ExternalChat(_) | Event::ExternalTag(_) => {}
//!     Event::Unknown { raw_xml, .. } => { /* store it; never drop an event */ let _ = raw_xml; }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod client;
pub mod crypto;
pub mod device;
pub mod events;
pub mod secret;
mod xml;

pub use client::{AppClient, ClientConfig, RetryConfig, WeComClient, WeComError};
pub use crypto::{CallbackCrypto, CryptoError};
pub use events::{CallbackEvent, Event, parse_event};
pub use secret::Secret;
pub use xml::XmlError;
