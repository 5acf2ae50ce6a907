//! The staff member's confirmation of a mass send — the moment messages are actually
//! delivered — and the admin view of all mass sends.

use super::mass_send::{Target, month_of, quota};
use crate::deliveries::DeliveryKind;
use crate::state::Sim;

impl Sim {
    /// Simulates the sender(s) confirming a mass send in the client (all senders when
    /// `userid` is `None`). Delivers to each recipient still a friend and within quota.
    /// Returns the number of messages delivered; errors on an unknown or cancelled msgid.
    pub fn confirm_mass_send(&self, msgid: &str, userid: Option<&str>) -> anyhow::Result<usize> {
        let c = self.company();
        let only = match userid {
            Some(u) => Some(
                c.staff_by_userid(u)
                    .ok_or_else(|| anyhow::anyhow!("unknown userid {u}"))?,
            ),
            None => None,
        };
        let now = self.now();
        let quota = quota(self.0.config.read().mass_send.receive_quota_per_month, now);
        let mut guard = self.0.mass.lock();
        let m = &mut *guard;
        let &i = m
            .index
            .get(msgid)
            .ok_or_else(|| anyhow::anyhow!("unknown msgid {msgid}"))?;
        let send = &mut m.sends[i];
        anyhow::ensure!(!send.cancelled, "mass send {msgid} was cancelled");
        let mut log = self.0.deliveries.lock();
        let mut delivered = 0;
        let kind = if send.group {
            DeliveryKind::GroupMassSend
        } else {
            DeliveryKind::MassSend
        };
        for task in send
            .tasks
            .iter_mut()
            .filter(|t| t.confirmed_at.is_none() && only.is_none_or(|o| o == t.sender))
        {
            task.confirmed_at = Some(now);
            let sender = &c.staff[task.sender as usize].userid;
            for r in &mut task.recipients {
                let reachable = match r.target {
                    Target::Customer(cu) => c.follow_of(cu, task.sender).is_some(),
                    Target::Chat(ch) => !c.chats[ch as usize].dismissed,
                };
                let got = m.received.entry(r.target).or_default();
                let this_month = got
                    .iter()
                    .filter(|&&t| month_of(t) == month_of(now))
                    .count() as u32;
                r.status = if !reachable {
                    2
                } else if this_month >= quota {
                    3
                } else {
                    1
                };
                if r.status == 1 {
                    got.push(now);
                    r.send_time = now;
                    let to = match r.target {
                        Target::Customer(cu) => c.external_userid(cu),
                        Target::Chat(ch) => c.chat_id(ch),
                    };
                    log.push(kind, msgid, sender, to, &send.content, now);
                    delivered += 1;
                }
            }
        }
        Ok(delivered)
    }

    /// Mass sends created so far, as JSON (admin view).
    pub fn mass_sends(&self) -> serde_json::Value {
        let c = self.company();
        let m = self.0.mass.lock();
        let list: Vec<serde_json::Value> = m
            .sends
            .iter()
            .map(|s| {
                let tasks: Vec<serde_json::Value> = s
                    .tasks
                    .iter()
                    .map(|t| {
                        let count = |st: u8| t.recipients.iter().filter(|r| r.status == st).count();
                        serde_json::json!({
                            "userid": c.staff[t.sender as usize].userid,
                            "confirmed_at": t.confirmed_at,
                            "recipients": t.recipients.len(),
                            "status_counts": [count(0), count(1), count(2), count(3)],
                        })
                    })
                    .collect();
                serde_json::json!({"msgid": s.msgid, "chat_type": if s.group {"group"} else {"single"},
                    "create_time": s.create_time, "cancelled": s.cancelled, "reminders": s.reminders.len(),
                    "content": *s.content, "tasks": tasks})
            })
            .collect();
        serde_json::Value::Array(list)
    }
}
