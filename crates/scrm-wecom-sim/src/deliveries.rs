//! The delivery log: every message a customer, group or member actually received (welcome
//! messages, mass sends after confirmation, app messages), so tests can assert "each customer
//! got exactly one message" and spot duplicates after crashes and retries.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

/// What kind of message was delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// send_welcome_msg to a new customer.
    Welcome,
    /// A mass send (企业群发) to a customer, after the sender confirmed.
    MassSend,
    /// A mass send to a customer group chat.
    GroupMassSend,
    /// message/send to a member.
    AppMessage,
}

/// One received message.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery {
    /// Order of delivery, from 1.
    pub seq: u64,
    pub kind: DeliveryKind,
    /// msgid of the mass send / app message; the welcome_code for welcome messages.
    pub msgid: String,
    /// Sending member's userid (or the agentid for app messages).
    pub sender: String,
    /// external_userid, chat_id or member userid.
    pub recipient: String,
    /// The message body as the client sent it (text + attachments); shared between the
    /// recipients of one send, hence the `Arc`.
    #[serde(serialize_with = "ser_arc")]
    pub content: Arc<serde_json::Value>,
    /// Unix seconds (simulator clock).
    pub time: i64,
}

fn ser_arc<S: Serializer>(v: &Arc<serde_json::Value>, s: S) -> Result<S::Ok, S::Error> {
    v.as_ref().serialize(s)
}

/// Filter for [`DeliveryLog::query`]; every given field must match.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeliveryQuery {
    pub recipient: Option<String>,
    pub sender: Option<String>,
    pub msgid: Option<String>,
    pub kind: Option<DeliveryKind>,
    /// Only deliveries with `seq` greater than this.
    pub after_seq: Option<u64>,
    /// At most this many (default: all).
    pub limit: Option<usize>,
}

/// A recipient that received the same content more than once.
#[derive(Clone, Debug, Serialize)]
pub struct Duplicate {
    pub recipient: String,
    pub count: usize,
    pub msgids: Vec<String>,
    #[serde(serialize_with = "ser_arc")]
    pub content: Arc<serde_json::Value>,
}

/// Per (recipient, content): count, msgids, the content.
type Seen = (usize, Vec<String>, Arc<serde_json::Value>);

/// Append-only log of deliveries.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    items: Vec<Delivery>,
}

impl DeliveryLog {
    /// Records a delivery and returns its seq.
    pub fn push(
        &mut self,
        kind: DeliveryKind,
        msgid: &str,
        sender: &str,
        recipient: String,
        content: &Arc<serde_json::Value>,
        time: i64,
    ) -> u64 {
        let seq = self.items.len() as u64 + 1;
        self.items.push(Delivery {
            seq,
            kind,
            msgid: msgid.to_string(),
            sender: sender.to_string(),
            recipient,
            content: Arc::clone(content),
            time,
        });
        seq
    }

    /// Number of deliveries.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing was delivered.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Deliveries matching a query, in delivery order.
    pub fn query(&self, q: &DeliveryQuery) -> Vec<Delivery> {
        let start = q.after_seq.map_or(0, |s| s as usize).min(self.items.len());
        self.items[start..]
            .iter()
            .filter(|d| q.recipient.as_deref().is_none_or(|r| d.recipient == r))
            .filter(|d| q.sender.as_deref().is_none_or(|s| d.sender == s))
            .filter(|d| q.msgid.as_deref().is_none_or(|m| d.msgid == m))
            .filter(|d| q.kind.is_none_or(|k| d.kind == k))
            .take(q.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Messages received per recipient.
    pub fn count_per_recipient(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for d in &self.items {
            *m.entry(d.recipient.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Recipients that received identical content more than once (across msgids: the
    /// signature of a sender that retried a mass send it had already created).
    pub fn duplicates(&self) -> Vec<Duplicate> {
        // Serialise each distinct content once; many deliveries share one Arc.
        let mut text: HashMap<*const serde_json::Value, String> = HashMap::new();
        let mut seen: HashMap<(&str, String), Seen> = HashMap::new();
        for d in &self.items {
            let key = text
                .entry(Arc::as_ptr(&d.content))
                .or_insert_with(|| d.content.to_string())
                .clone();
            let e = seen
                .entry((d.recipient.as_str(), key))
                .or_insert_with(|| (0, Vec::new(), Arc::clone(&d.content)));
            e.0 += 1;
            e.1.push(d.msgid.clone());
        }
        let mut out: Vec<Duplicate> = seen
            .into_iter()
            .filter(|(_, v)| v.0 > 1)
            .map(|((r, _), (count, msgids, content))| Duplicate {
                recipient: r.to_string(),
                count,
                msgids,
                content,
            })
            .collect();
        out.sort_by(|a, b| a.recipient.cmp(&b.recipient));
        out
    }

    /// Forgets everything (admin reset).
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_same_content_to_same_recipient() {
        let mut log = DeliveryLog::default();
        let a = Arc::new(serde_json::json!({"text":{"content":"hi"}}));
        let b = Arc::new(serde_json::json!({"text":{"content":"hi"}}));
        log.push(DeliveryKind::MassSend, "m1", "s", "c1".into(), &a, 1);
        log.push(DeliveryKind::MassSend, "m1", "s", "c2".into(), &a, 1);
        log.push(DeliveryKind::MassSend, "m2", "s", "c1".into(), &b, 2);
        let d = log.duplicates();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].recipient, "c1");
        assert_eq!(d[0].msgids, vec!["m1", "m2"]);
        assert_eq!(log.count_per_recipient()["c1"], 2);
        let q = DeliveryQuery {
            recipient: Some("c2".into()),
            ..Default::default()
        };
        assert_eq!(log.query(&q).len(), 1);
    }
}
