//! A device gateway simulator: devices with personal WeChat accounts, their friends, chat rooms
//! and moments, connected to scrm as a gateway over the protocol of `scrm_wecom::device`.
//!
//! It executes commands (keeping a delivery log of every message sent, chat room created and
//! moment liked), dedupes them by command id (a command sent again after a reconnect is
//! acknowledged with its first result, not run twice), sends events (a friend added, a message,
//! a member joining a room, a moment) and sends them again until scrm acknowledges them. It
//! reconnects by itself when the connection drops, and can be told to drop it at the worst
//! moments: right after running a command and before acknowledging it, or on receiving one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use scrm_wecom::device::{
    AccountInfo, AccountStatus, Chatroom, Frame, Friend, Moment, command, event,
};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// A chat room on a device.
#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub name: String,
    pub members: Vec<String>,
}

/// A device's account and what it holds.
#[derive(Debug, Clone)]
pub struct Device {
    pub nickname: String,
    pub status: AccountStatus,
    pub friends: BTreeMap<String, String>,
    pub rooms: BTreeMap<String, Room>,
    pub moments: Vec<Moment>,
    pub liked: Vec<String>,
}

/// One thing a device did for scrm.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub command_id: String,
    pub account: String,
    /// `send_text`, `send_image`, `send_link`, `create_chatroom`, `like_moment`.
    pub kind: String,
    /// The friend, chat room (created or sent to) or moment.
    pub to: String,
    /// The command's data.
    pub data: Value,
    /// When the device ran it (wall clock, epoch ms): the spacing between sends.
    pub at_ms: i64,
}

/// Where to drop the connection once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPoint {
    /// On receiving the n-th command, before running it.
    BeforeRun,
    /// After running the n-th command, before acknowledging it.
    BeforeAck,
}

#[derive(Default)]
struct SimState {
    devices: BTreeMap<String, Device>,
    /// Acks of commands already run, by command id.
    done: HashMap<String, Frame>,
    deliveries: Vec<Delivery>,
    /// Frames scrm has not acknowledged yet, in order.
    outbox: Vec<Frame>,
    /// Commands received again after they ran.
    duplicates: usize,
    /// Connections made (hello acknowledged or not).
    connections: usize,
    commands_seen: usize,
    /// (scrm URL, command id) of every command frame received, in order.
    received: Vec<(String, String)>,
    drop_at: Option<(usize, DropPoint)>,
    next_id: u64,
    /// The last moment's post time (epoch ms).
    moment_clock: i64,
    /// Moments per `fetch_moments` page when scrm names no `limit`.
    moments_page: usize,
}

impl SimState {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn account(&self, wxid: &str, d: &Device) -> AccountInfo {
        AccountInfo {
            wxid: wxid.to_string(),
            nickname: d.nickname.clone(),
            status: d.status,
        }
    }
}

/// The gateway simulator. Clone freely; [`GatewaySim::stop`] ends its connection loop.
#[derive(Clone)]
pub struct GatewaySim {
    state: Arc<Mutex<SimState>>,
    outbox_changed: Arc<Notify>,
    drop_now: Arc<Notify>,
    stop: CancellationToken,
}

impl Default for GatewaySim {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewaySim {
    /// A simulator with no devices, not connected.
    pub fn new() -> Self {
        GatewaySim {
            state: Arc::new(Mutex::new(SimState {
                moments_page: 20,
                ..SimState::default()
            })),
            outbox_changed: Arc::new(Notify::new()),
            drop_now: Arc::new(Notify::new()),
            stop: CancellationToken::new(),
        }
    }

    /// Connect to scrm's gateway WebSocket (`ws://host:port/api/v1/devices/gateway/ws`) with the
    /// gateway's token, and stay connected: after a drop it reconnects after `reconnect_after`.
    pub fn connect(&self, url: &str, token: &str, reconnect_after: Duration) {
        let (sim, url, token) = (self.clone(), url.to_string(), token.to_string());
        tokio::spawn(async move {
            while !sim.stop.is_cancelled() {
                if let Err(e) = sim.session(&url, &token).await {
                    tracing::debug!(error = %e, "gateway simulator connection ended");
                }
                tokio::select! {
                    _ = sim.stop.cancelled() => break,
                    _ = tokio::time::sleep(reconnect_after) => {}
                }
            }
        });
    }

    /// End the connection loop for good.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Drop the current connection now (it comes back by itself).
    pub fn drop_connection(&self) {
        self.drop_now.notify_waiters();
    }

    /// Drop the connection once, at the `n`-th command received from now on (1 = the next).
    pub fn drop_at_command(&self, n: usize, point: DropPoint) {
        let mut s = self.state.lock();
        let at = s.commands_seen + n;
        s.drop_at = Some((at, point));
    }

    /// Add a device account.
    pub fn add_device(&self, wxid: &str, nickname: &str) {
        self.state.lock().devices.insert(
            wxid.to_string(),
            Device {
                nickname: nickname.to_string(),
                status: AccountStatus::Active,
                friends: BTreeMap::new(),
                rooms: BTreeMap::new(),
                moments: Vec::new(),
                liked: Vec::new(),
            },
        );
    }

    /// Add a friend quietly (as if it had always been there: no event).
    pub fn add_friend(&self, account: &str, wxid: &str, nickname: &str) {
        if let Some(d) = self.state.lock().devices.get_mut(account) {
            d.friends.insert(wxid.to_string(), nickname.to_string());
        }
    }

    /// A new friend: added, and the `friend_added` event sent.
    pub fn new_friend(&self, account: &str, wxid: &str, nickname: &str) {
        self.add_friend(account, wxid, nickname);
        let f = Friend {
            wxid: wxid.into(),
            nickname: nickname.into(),
        };
        self.event(
            account,
            event::FRIEND_ADDED,
            serde_json::to_value(f).unwrap_or_default(),
        );
    }

    /// A friend deleted the account: removed, and `friend_deleted` sent.
    pub fn delete_friend(&self, account: &str, wxid: &str) {
        if let Some(d) = self.state.lock().devices.get_mut(account) {
            d.friends.remove(wxid);
        }
        self.event(account, event::FRIEND_DELETED, json!({"wxid": wxid}));
    }

    /// Add a chat room quietly.
    pub fn add_room(&self, account: &str, room: &str, name: &str, members: &[&str]) {
        if let Some(d) = self.state.lock().devices.get_mut(account) {
            d.rooms.insert(
                room.to_string(),
                Room {
                    name: name.to_string(),
                    members: members.iter().map(|m| m.to_string()).collect(),
                },
            );
        }
    }

    /// The account left a chat room (quietly: scrm learns it from the next friend sync).
    pub fn leave_room(&self, account: &str, room: &str) {
        if let Some(d) = self.state.lock().devices.get_mut(account) {
            d.rooms.remove(room);
        }
    }

    /// Someone joined a chat room: `member_joined` sent.
    pub fn join_room(&self, account: &str, room: &str, wxid: &str, nickname: &str) {
        if let Some(r) = self
            .state
            .lock()
            .devices
            .get_mut(account)
            .and_then(|d| d.rooms.get_mut(room))
        {
            r.members.push(wxid.to_string());
        }
        self.event(
            account,
            event::MEMBER_JOINED,
            json!({"chatroomId": room, "wxid": wxid, "nickname": nickname}),
        );
    }

    /// A message to the account from a friend (or in a chat room).
    pub fn receive_message(&self, account: &str, from: &str, chatroom: Option<&str>, text: &str) {
        self.event(
            account,
            event::MESSAGE,
            json!({"from": from, "chatroomId": chatroom, "text": text}),
        );
    }

    /// A friend posted a moment: kept and `moment_posted` sent.
    pub fn post_moment(&self, account: &str, author: &str, text: &str) -> String {
        let m = self.keep_moment(account, author, text);
        let id = m.moment_id.clone();
        self.event(
            account,
            event::MOMENT_POSTED,
            serde_json::to_value(m).unwrap_or_default(),
        );
        id
    }

    /// A friend posted a moment the device does not announce (no `moment_posted`): scrm
    /// learns of it only by `fetch_moments` (moments collection).
    pub fn post_moment_unannounced(&self, account: &str, author: &str, text: &str) -> String {
        self.keep_moment(account, author, text).moment_id
    }

    /// A moment posted at `posted_at` (epoch ms), unannounced, e.g. long ago. Moments list
    /// newest first by the order they were posted here: post older ones first.
    pub fn post_moment_unannounced_at(
        &self,
        account: &str,
        author: &str,
        text: &str,
        posted_at: i64,
    ) -> String {
        let mut s = self.state.lock();
        let id = s.id("moment");
        let m = Moment {
            moment_id: id.clone(),
            author: author.into(),
            text: text.into(),
            posted_at: Some(posted_at),
        };
        if let Some(d) = s.devices.get_mut(account) {
            d.moments.push(m);
        }
        id
    }

    fn keep_moment(&self, account: &str, author: &str, text: &str) -> Moment {
        let mut s = self.state.lock();
        let id = s.id("moment");
        // Strictly increasing post times, so "newest first" is well defined in tests.
        s.moment_clock = (s.moment_clock + 1).max(chrono::Utc::now().timestamp_millis());
        let m = Moment {
            moment_id: id,
            author: author.into(),
            text: text.into(),
            posted_at: Some(s.moment_clock),
        };
        if let Some(d) = s.devices.get_mut(account) {
            d.moments.push(m.clone());
        }
        m
    }

    /// Moments per `fetch_moments` page when scrm names no `limit` (default 20).
    pub fn set_moments_page_size(&self, n: usize) {
        self.state.lock().moments_page = n.max(1);
    }

    /// An account's status changed (logged out = EXPIRED, device off = OFFLINE).
    pub fn set_status(&self, account: &str, status: AccountStatus) {
        let mut s = self.state.lock();
        let Some(d) = s.devices.get_mut(account) else {
            return;
        };
        d.status = status;
        let info = s.account(account, &s.devices[account].clone());
        let id = s.id("acct");
        s.outbox.push(Frame::Account { id, account: info });
        drop(s);
        self.outbox_changed.notify_waiters();
    }

    fn event(&self, account: &str, name: &str, data: Value) {
        let mut s = self.state.lock();
        let id = s.id("ev");
        s.outbox.push(Frame::Event {
            id,
            account: account.to_string(),
            event: name.to_string(),
            data,
        });
        drop(s);
        self.outbox_changed.notify_waiters();
    }

    /// Everything the devices did, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().deliveries.clone()
    }

    /// Commands received again after they had run (answered from the first run).
    pub fn duplicates(&self) -> usize {
        self.state.lock().duplicates
    }

    /// Connections made so far.
    pub fn connections(&self) -> usize {
        self.state.lock().connections
    }

    /// Events and account changes scrm has not acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.state.lock().outbox.len()
    }

    /// A device's chat rooms.
    pub fn rooms(&self, account: &str) -> BTreeMap<String, Room> {
        self.state
            .lock()
            .devices
            .get(account)
            .map(|d| d.rooms.clone())
            .unwrap_or_default()
    }

    /// Moments a device liked.
    pub fn liked(&self, account: &str) -> Vec<String> {
        self.state
            .lock()
            .devices
            .get(account)
            .map(|d| d.liked.clone())
            .unwrap_or_default()
    }

    /// (scrm URL, command id) of every command frame received, in order: which connection each
    /// command came through, and how often.
    pub fn received(&self) -> Vec<(String, String)> {
        self.state.lock().received.clone()
    }

    async fn session(&self, url: &str, token: &str) -> anyhow::Result<()> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        let (mut out, mut incoming) = ws.split();
        let hello = {
            let mut s = self.state.lock();
            s.connections += 1;
            let accounts = s
                .devices
                .iter()
                .map(|(w, d)| s.account(w, d))
                .collect::<Vec<_>>();
            Frame::Hello {
                id: s.id("hello"),
                accounts,
            }
        };
        out.send(Message::text(hello.to_text())).await?;
        // Frames of the outbox sent on this connection (the rest are sent when it changes).
        let mut sent: Vec<String> = Vec::new();
        loop {
            let pending: Vec<Frame> = {
                let s = self.state.lock();
                s.outbox
                    .iter()
                    .filter(|f| !sent.iter().any(|id| id == f.id()))
                    .cloned()
                    .collect()
            };
            for f in pending {
                sent.push(f.id().to_string());
                out.send(Message::text(f.to_text())).await?;
            }
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                _ = self.drop_now.notified() => return Ok(()),
                _ = self.outbox_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                msg = incoming.next() => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t.to_string(),
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.into()),
                    };
                    match serde_json::from_str::<Frame>(&text)? {
                        Frame::Ack { id, .. } => self.state.lock().outbox.retain(|f| f.id() != id),
                        Frame::Command { id, account, command, data } => {
                            self.state.lock().received.push((url.to_string(), id.clone()));
                            let Some(ack) = self.on_command(&id, &account, &command, &data) else {
                                return Ok(()); // dropped on purpose
                            };
                            out.send(Message::text(ack.to_text())).await?;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Run a command once; `None` when the connection is to drop instead of answering.
    fn on_command(&self, id: &str, account: &str, name: &str, data: &Value) -> Option<Frame> {
        let mut s = self.state.lock();
        s.commands_seen += 1;
        let drop_here = s
            .drop_at
            .filter(|(n, _)| *n == s.commands_seen)
            .map(|(_, p)| p);
        if drop_here.is_some() {
            s.drop_at = None;
        }
        if drop_here == Some(DropPoint::BeforeRun) {
            return None;
        }
        if let Some(ack) = s.done.get(id).cloned() {
            s.duplicates += 1;
            return Some(ack);
        }
        let result = run(&mut s, id, account, name, data);
        let ack = match result {
            Ok(result) => Frame::Ack {
                id: id.to_string(),
                ok: true,
                result,
                error: None,
            },
            Err(e) => Frame::Ack {
                id: id.to_string(),
                ok: false,
                result: Value::Null,
                error: Some(e),
            },
        };
        s.done.insert(id.to_string(), ack.clone());
        if drop_here == Some(DropPoint::BeforeAck) {
            return None;
        }
        Some(ack)
    }
}

/// What a device does with a command.
fn run(
    s: &mut SimState,
    id: &str,
    account: &str,
    name: &str,
    data: &Value,
) -> Result<Value, String> {
    let room_id = if name == command::CREATE_CHATROOM {
        s.next_id += 1;
        format!("{}@chatroom", 10_000 + s.next_id)
    } else {
        String::new()
    };
    let d = s
        .devices
        .get_mut(account)
        .ok_or_else(|| format!("no account {account} on this gateway"))?;
    if d.status != AccountStatus::Active {
        return Err(format!("account {account} is {}", d.status.as_str()));
    }
    let str_of = |k: &str| data[k].as_str().unwrap_or_default().to_string();
    let (to, result) = match name {
        command::SEND_TEXT | command::SEND_IMAGE | command::SEND_LINK => {
            let to = str_of("to");
            if !d.friends.contains_key(&to) && !d.rooms.contains_key(&to) {
                return Err(format!(
                    "{to} is neither a friend nor a chat room of {account}"
                ));
            }
            (to, json!({}))
        }
        command::CREATE_CHATROOM => {
            let members: Vec<String> =
                serde_json::from_value(data["members"].clone()).unwrap_or_default();
            if let Some(m) = members.iter().find(|m| !d.friends.contains_key(*m)) {
                return Err(format!("{m} is not a friend of {account}"));
            }
            let mut all = vec![account.to_string()];
            all.extend(members);
            d.rooms.insert(
                room_id.clone(),
                Room {
                    name: str_of("name"),
                    members: all,
                },
            );
            (room_id.clone(), json!({"chatroomId": room_id}))
        }
        command::LIKE_MOMENT => {
            let m = str_of("momentId");
            if !d.moments.iter().any(|x| x.moment_id == m) {
                return Err(format!("no moment {m}"));
            }
            d.liked.push(m.clone());
            (m, json!({}))
        }
        command::FETCH_MOMENTS => {
            // Newest first, one page; the cursor is the offset of the next page.
            let limit = data["limit"]
                .as_u64()
                .map(|l| l as usize)
                .unwrap_or(s.moments_page)
                .max(1);
            let from: usize = data["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let newest: Vec<&Moment> = d.moments.iter().rev().collect();
            let page: Vec<&Moment> = newest.iter().skip(from).take(limit).copied().collect();
            let next = (from + limit < newest.len()).then(|| (from + limit).to_string());
            let mut r = json!({"moments": page});
            if let Some(n) = next {
                r["cursor"] = json!(n);
            }
            return Ok(r);
        }
        command::FETCH_FRIENDS => {
            let friends: Vec<Friend> = d
                .friends
                .iter()
                .map(|(w, n)| Friend {
                    wxid: w.clone(),
                    nickname: n.clone(),
                })
                .collect();
            let chatrooms: Vec<Chatroom> = d
                .rooms
                .iter()
                .map(|(id, r)| Chatroom {
                    chatroom_id: id.clone(),
                    name: r.name.clone(),
                })
                .collect();
            return Ok(json!({"friends": friends, "chatrooms": chatrooms}));
        }
        other => return Err(format!("unknown command {other}")),
    };
    s.deliveries.push(Delivery {
        command_id: id.to_string(),
        account: account.to_string(),
        kind: name.to_string(),
        to,
        data: data.clone(),
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    });
    Ok(result)
}
