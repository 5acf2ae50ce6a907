//! Callbacks (API-FACTS §11-12): scenario events rendered as WeCom's self-built-app event XML,
//! sealed with `scrm_wecom::crypto` (encrypted, signed) and POSTed to the configured URL with
//! `msg_signature`/`timestamp`/`nonce`. Like WeCom: a per-attempt timeout (5 s), retries (3)
//! on anything but HTTP 200. Events go out one at a time, in order, from one worker task;
//! every event and its delivery outcome is kept for the admin API.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::Sim;
use scrm_wecom::events as we;

/// A change event, as its XML carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// `change_external_contact`: add/edit/delete of a follow relation, transfer_fail.
    ChangeExternalContact {
        change_type: String,
        user_id: String,
        external_user_id: String,
        state: Option<String>,
        welcome_code: Option<String>,
        /// `DELETE_BY_TRANSFER` on del_external_contact caused by a transfer.
        source: Option<String>,
        /// transfer_fail only: `customer_refused` or `customer_limit_exceed`.
        fail_reason: Option<String>,
    },
    /// `change_external_chat`: create/update/dismiss of a customer group chat.
    ChangeExternalChat {
        chat_id: String,
        change_type: String,
        update_detail: Option<String>,
        join_scene: Option<u8>,
        quit_scene: Option<u8>,
        mem_change_list: Vec<String>,
        last_mem_ver: Option<String>,
        cur_mem_ver: Option<String>,
    },
    /// `change_external_tag`: create/update/delete of a tag or tag group.
    ChangeExternalTag {
        id: String,
        tag_type: String,
        change_type: String,
    },
}

impl Event {
    /// The same event as `scrm_wecom`'s typed model, whose renderer writes the XML we send:
    /// one renderer for both sides keeps the simulator and the parser in step.
    pub fn to_wecom(&self) -> we::Event {
        match self.clone() {
            Event::ChangeExternalContact {
                change_type,
                user_id,
                external_user_id,
                state,
                welcome_code,
                source,
                fail_reason,
            } => match we::ExternalContactChange::from_wire(&change_type) {
                Some(change) => we::Event::ExternalContact(we::ExternalContactEvent {
                    change,
                    user_id,
                    external_user_id,
                    state,
                    welcome_code,
                    source,
                    fail_reason,
                }),
                None => we::Event::Unknown {
                    msg_type: "event".into(),
                    event: "change_external_contact".into(),
                    change_type,
                    raw_xml: String::new(),
                },
            },
            Event::ChangeExternalChat {
                chat_id,
                change_type,
                update_detail,
                join_scene,
                quit_scene,
                mem_change_list,
                last_mem_ver,
                cur_mem_ver,
            } => {
                let change = match change_type.as_str() {
                    "create" => we::ChatChange::Create,
                    "dismiss" => we::ChatChange::Dismiss,
                    _ => we::ChatChange::Update(we::ChatUpdate {
                        detail: we::ChatUpdateDetail::from_wire(
                            update_detail.as_deref().unwrap_or(""),
                        ),
                        join_scene: join_scene.map(i64::from),
                        quit_scene: quit_scene.map(i64::from),
                        mem_change_cnt: (!mem_change_list.is_empty())
                            .then_some(mem_change_list.len() as i64),
                        mem_change_list,
                        last_mem_ver,
                        cur_mem_ver,
                    }),
                };
                we::Event::ExternalChat(we::ExternalChatEvent { chat_id, change })
            }
            Event::ChangeExternalTag {
                id,
                tag_type,
                change_type,
            } => we::Event::ExternalTag(we::ExternalTagEvent {
                change: we::TagChange::from_wire(&change_type).unwrap_or(we::TagChange::Update),
                id,
                tag_type: Some(we::TagKind::from_wire(&tag_type)),
                strategy_id: None,
            }),
        }
    }

    /// The decrypted event XML (self-built envelope: ToUserName = corpid, FromUserName = sys).
    pub fn to_xml(&self, corp_id: &str, create_time: i64) -> String {
        we::CallbackEvent::new(corp_id, create_time, self.to_wecom()).to_xml()
    }
}

/// Delivery outcome of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Queued or being retried.
    Pending,
    /// The receiver answered HTTP 200.
    Delivered,
    /// All attempts failed.
    Failed,
    /// No callback URL configured: recorded only.
    NoUrl,
}

/// One emitted event and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct CallbackRecord {
    pub seq: u64,
    pub event: Event,
    /// The plaintext XML that was encrypted.
    pub xml: String,
    pub create_time: i64,
    pub attempts: u32,
    pub status: CallbackStatus,
    pub last_error: Option<String>,
}

/// The event log and the queue the worker drains.
pub(crate) struct Dispatcher {
    log: Mutex<Vec<CallbackRecord>>,
    queue: Mutex<VecDeque<usize>>,
    wake: Notify,
    pending: AtomicUsize,
    idle: Notify,
    http: reqwest::Client,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            log: Mutex::new(Vec::new()),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            http: reqwest::Client::new(),
        }
    }
}

impl Dispatcher {
    pub(crate) fn clear(&self) {
        self.log.lock().clear();
        let dropped = std::mem::take(&mut *self.queue.lock()).len();
        self.pending.fetch_sub(dropped, Ordering::AcqRel);
        self.idle.notify_waiters();
    }
}

impl Sim {
    /// Records an event and queues it for delivery.
    pub(crate) fn emit(&self, event: Event) -> u64 {
        let now = self.now();
        let corp_id = self.0.config.read().creds.corp_id.clone();
        let d = &self.0.callbacks;
        let mut log = d.log.lock();
        let seq = log.len() as u64 + 1;
        log.push(CallbackRecord {
            seq,
            xml: event.to_xml(&corp_id, now),
            event,
            create_time: now,
            attempts: 0,
            status: CallbackStatus::Pending,
            last_error: None,
        });
        d.pending.fetch_add(1, Ordering::AcqRel);
        d.queue.lock().push_back(log.len() - 1);
        drop(log);
        d.wake.notify_one();
        seq
    }

    /// Every event emitted so far with its delivery outcome.
    pub fn callbacks(&self) -> Vec<CallbackRecord> {
        self.0.callbacks.log.lock().clone()
    }

    /// Waits until every queued callback was delivered or gave up.
    pub async fn flush_callbacks(&self) {
        let d = &self.0.callbacks;
        loop {
            let idle = d.idle.notified();
            if d.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// The delivery worker: runs until `cancel` fires.
    pub(crate) async fn run_callbacks(self, cancel: CancellationToken) {
        loop {
            let next = self.0.callbacks.queue.lock().pop_front();
            match next {
                Some(i) => {
                    tokio::select! {
                        _ = self.deliver(i) => {}
                        _ = cancel.cancelled() => return,
                    }
                    self.0.callbacks.pending.fetch_sub(1, Ordering::AcqRel);
                    self.0.callbacks.idle.notify_waiters();
                }
                None => {
                    tokio::select! {
                        _ = self.0.callbacks.wake.notified() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
    }

    fn set_record(&self, i: usize, f: impl FnOnce(&mut CallbackRecord)) {
        if let Some(r) = self.0.callbacks.log.lock().get_mut(i) {
            f(r);
        }
    }

    async fn deliver(&self, i: usize) {
        let Some(xml) = self.0.callbacks.log.lock().get(i).map(|r| r.xml.clone()) else {
            return;
        };
        let (cb, corp_id, agent_id) = {
            let c = self.0.config.read();
            (
                c.callback.clone(),
                c.creds.corp_id.clone(),
                c.creds.agent_id.to_string(),
            )
        };
        let Some(url) = cb.url.filter(|u| !u.is_empty()) else {
            self.set_record(i, |r| r.status = CallbackStatus::NoUrl);
            return;
        };
        let crypto = match scrm_wecom::crypto::CallbackCrypto::new(
            cb.token.clone(),
            &cb.encoding_aes_key,
            corp_id,
        ) {
            Ok(c) => c,
            Err(e) => {
                self.set_record(i, |r| {
                    r.status = CallbackStatus::Failed;
                    r.last_error = Some(format!("callback crypto: {e}"));
                });
                return;
            }
        };
        for attempt in 0..=cb.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(cb.retry_delay_ms)).await;
            }
            // Each attempt is sealed afresh, as a real retry carries a new timestamp/nonce.
            let timestamp = self.now().to_string();
            let nonce = (rand::random::<u32>() % 1_000_000_000).to_string();
            let sealed = crypto.seal_callback(&xml, &timestamp, &nonce, Some(&agent_id));
            let sep = if url.contains('?') { '&' } else { '?' };
            let res = self
                .0
                .callbacks
                .http
                .post(format!("{url}{sep}{}", sealed.query()))
                .header(http::header::CONTENT_TYPE, "text/xml")
                .timeout(Duration::from_millis(cb.timeout_ms))
                .body(sealed.body_xml)
                .send()
                .await;
            let error = match res {
                Ok(r) if r.status() == http::StatusCode::OK => None,
                Ok(r) => Some(format!("HTTP {}", r.status())),
                Err(e) => Some(e.to_string()),
            };
            let done = error.is_none();
            self.set_record(i, |r| {
                r.attempts = attempt + 1;
                r.last_error = error;
                if done {
                    r.status = CallbackStatus::Delivered;
                }
            });
            if done {
                return;
            }
        }
        self.set_record(i, |r| r.status = CallbackStatus::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_event_round_trips_through_the_client_parser() {
        let e = Event::ChangeExternalContact {
            change_type: "add_external_contact".into(),
            user_id: "zhangsan".into(),
            external_user_id: "woAJ".into(),
            state: Some("teststate".into()),
            welcome_code: Some("WELCOMECODE".into()),
            source: None,
            fail_reason: None,
        };
        let x = e.to_xml("ww1", 1403610513);
        assert!(x.contains("<ChangeType><![CDATA[add_external_contact]]></ChangeType>"));
        assert!(x.contains("<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>"));
        let parsed = scrm_wecom::events::parse_event(&x).unwrap();
        assert_eq!(parsed.event, e.to_wecom());
        assert_eq!(parsed.create_time, 1403610513);
    }

    #[test]
    fn chat_event_lists_members() {
        let e = Event::ChangeExternalChat {
            chat_id: "wr1".into(),
            change_type: "update".into(),
            update_detail: Some("add_member".into()),
            join_scene: Some(3),
            quit_scene: None,
            mem_change_list: vec!["a".into(), "b".into()],
            last_mem_ver: Some("v1".into()),
            cur_mem_ver: Some("v2".into()),
        };
        let x = e.to_xml("ww1", 1);
        assert!(x.contains("<MemChangeCnt>2</MemChangeCnt>"));
        assert_eq!(
            scrm_wecom::events::parse_event(&x).unwrap().event,
            e.to_wecom()
        );
    }
}
