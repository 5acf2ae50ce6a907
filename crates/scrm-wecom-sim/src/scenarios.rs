//! Scenarios: things people do in the WeCom client or admin console (a customer adds a
//! member, a member deletes a customer, someone joins a group, an admin edits tags…). Each
//! changes the company and emits the callback WeCom would send. Available as Rust methods on
//! [`Sim`] and as JSON routes under `/sim/admin/scenario/…` (see `admin`).

use anyhow::{Context, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::api::messages::WelcomeCode;
use crate::api::tags::{self, TagRef};
use crate::callbacks::Event;
use crate::company::{ChatMember, Follow, GroupChat, MemberRef, NONE};
use crate::state::Sim;

/// A customer adds a member (扫码/搜索…): `add_external_contact`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AddContact {
    /// The member added.
    pub userid: String,
    /// An existing customer; a new one is created when absent.
    pub external_userid: Option<String>,
    /// Name of a new customer (generated when absent).
    pub name: Option<String>,
    /// 1 WeChat (default), 2 WeCom user — for a new customer.
    pub kind: Option<u8>,
    /// 「联系我」 state carried by the event.
    pub state: Option<String>,
    /// add_way of the follow (default 1, QR code).
    pub add_way: Option<u8>,
    /// `add_half_external_contact` (免验证, before the member confirms) instead.
    pub half: bool,
    /// Do not hand out a WelcomeCode (a console-configured welcome message exists).
    pub no_welcome_code: bool,
}

/// Result of [`Sim::customer_adds_staff`].
#[derive(Clone, Debug, Serialize)]
pub struct AddedContact {
    pub external_userid: String,
    pub welcome_code: Option<String>,
    /// Sequence number of the emitted callback.
    pub callback_seq: u64,
}

/// A member edits a customer's remark or corp tags in the client: `edit_external_contact`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EditContact {
    pub userid: String,
    pub external_userid: String,
    pub remark: Option<String>,
    pub description: Option<String>,
    pub add_tag: Vec<String>,
    pub remove_tag: Vec<String>,
}

/// A (userid, external_userid) pair.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Pair {
    pub userid: String,
    pub external_userid: String,
}

/// Someone joins a group chat: `change_external_chat` / `add_member`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct JoinGroup {
    pub chat_id: String,
    /// A customer (external_userid) or member (userid) joining; a new customer if empty.
    pub member: Option<String>,
    /// 0/1 invited (direct), 2 invite link, 3 QR code (the event carries 0 or 3).
    pub join_scene: u8,
}

/// Someone leaves (or is removed from) a group chat: `del_member`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LeaveGroup {
    pub chat_id: String,
    pub member: String,
    /// 0 left by themselves, 1 removed by owner/admin.
    pub quit_scene: u8,
}

/// A member creates a customer group chat: `create`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct CreateGroup {
    pub owner: String,
    pub name: String,
    /// external_userids and/or userids.
    pub members: Vec<String>,
}

/// The admin console creates tags (in a new or existing group): `change_external_tag/create`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleAddTags {
    pub group_id: Option<String>,
    pub group_name: Option<String>,
    pub tags: Vec<String>,
}

/// The admin console renames/reorders a tag or group: `update`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleEditTag {
    pub id: String,
    pub name: Option<String>,
    pub order: Option<u32>,
}

/// The admin console deletes tags/groups: `delete` (a group's tags go without callbacks).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct ConsoleDeleteTags {
    pub tag_id: Vec<String>,
    pub group_id: Vec<String>,
}

fn contact_event(change_type: &str, userid: &str, ext: &str) -> Event {
    Event::ChangeExternalContact {
        change_type: change_type.into(),
        user_id: userid.into(),
        external_user_id: ext.into(),
        state: None,
        welcome_code: None,
        source: None,
        fail_reason: None,
    }
}

impl Sim {
    /// A customer adds a member; returns the customer's id and the WelcomeCode.
    pub fn customer_adds_staff(&self, req: AddContact) -> anyhow::Result<AddedContact> {
        let now = self.now();
        let (ext, userid) = {
            let mut c = self.company_mut();
            let s = c
                .staff_by_userid(&req.userid)
                .with_context(|| format!("unknown userid {}", req.userid))?;
            ensure!(
                c.staff[s as usize].status == 1 && c.staff[s as usize].contact_enabled,
                "member cannot have customers"
            );
            let cu = match req.external_userid.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => c
                    .customer_by_id(e)
                    .with_context(|| format!("unknown external_userid {e}"))?,
                None => c.add_customer(req.kind.unwrap_or(1), req.name.clone()),
            };
            ensure!(
                c.follow_of(cu, s).is_none(),
                "already a customer of {}",
                req.userid
            );
            let state = c.intern_state(req.state.as_deref().unwrap_or(""));
            c.add_follow(Follow {
                customer: cu,
                staff: s,
                next: NONE,
                createtime: now as u32,
                add_way: req.add_way.unwrap_or(1),
                by_customer: true,
                state,
                tags: Box::new([]),
                extra: None,
            });
            (c.external_userid(cu), (s, cu))
        };
        let welcome_code = (!req.no_welcome_code).then(|| {
            let code = self.new_id("WC");
            let ttl = self.0.config.read().limits.welcome_code_ttl_secs as i64;
            self.0.welcome.lock().codes.insert(
                code.clone(),
                WelcomeCode {
                    staff: userid.0,
                    customer: userid.1,
                    expires_ms: self.now_ms() + ttl * 1000,
                    used: false,
                },
            );
            code
        });
        let callback_seq = self.emit(Event::ChangeExternalContact {
            change_type: if req.half {
                "add_half_external_contact"
            } else {
                "add_external_contact"
            }
            .into(),
            user_id: req.userid.clone(),
            external_user_id: ext.clone(),
            state: req.state.filter(|s| !s.is_empty()),
            welcome_code: welcome_code.clone(),
            source: None,
            fail_reason: None,
        });
        Ok(AddedContact {
            external_userid: ext,
            welcome_code,
            callback_seq,
        })
    }

    /// A member edits remark/description/tags in the client: `edit_external_contact`.
    pub fn staff_edits_contact(&self, req: EditContact) -> anyhow::Result<u64> {
        {
            let mut c = self.company_mut();
            if !req.add_tag.is_empty() || !req.remove_tag.is_empty() {
                tags::mark(
                    &mut c,
                    &req.userid,
                    &req.external_userid,
                    &req.add_tag,
                    &req.remove_tag,
                )
                .map_err(|(code, d)| anyhow!("errcode {code}: {d}"))?;
            }
            let s = c.staff_by_userid(&req.userid).context("unknown userid")?;
            let cu = c
                .customer_by_id(&req.external_userid)
                .context("unknown external_userid")?;
            let fi = c
                .follow_of(cu, s)
                .context("not a customer of this member")?;
            if req.remark.is_some() || req.description.is_some() {
                let initial = crate::api::external::generated_remark(&c, &c.follows[fi as usize]);
                let f = &mut c.follows[fi as usize];
                let extra = f.extra.get_or_insert_with(|| {
                    Box::new(crate::company::FollowExtra {
                        remark: initial,
                        ..Default::default()
                    })
                });
                if let Some(r) = req.remark {
                    extra.remark = r;
                }
                if let Some(d) = req.description {
                    extra.description = d;
                }
            }
        }
        Ok(self.emit(contact_event(
            "edit_external_contact",
            &req.userid,
            &req.external_userid,
        )))
    }

    fn remove_relation(&self, p: &Pair) -> anyhow::Result<()> {
        let mut c = self.company_mut();
        let s = c.staff_by_userid(&p.userid).context("unknown userid")?;
        let cu = c
            .customer_by_id(&p.external_userid)
            .context("unknown external_userid")?;
        let fi = c
            .follow_of(cu, s)
            .context("not a customer of this member")?;
        c.remove_follow(fi);
        Ok(())
    }

    /// The customer deletes the member: `del_follow_user`. The relation is gone (mass sends
    /// to this pair now fail with status 2).
    pub fn customer_deletes_staff(&self, p: Pair) -> anyhow::Result<u64> {
        self.remove_relation(&p)?;
        Ok(self.emit(contact_event(
            "del_follow_user",
            &p.userid,
            &p.external_userid,
        )))
    }

    /// The member deletes the customer: `del_external_contact`.
    pub fn staff_deletes_customer(&self, p: Pair) -> anyhow::Result<u64> {
        self.remove_relation(&p)?;
        Ok(self.emit(contact_event(
            "del_external_contact",
            &p.userid,
            &p.external_userid,
        )))
    }

    /// The customer refuses a pending transfer to `userid` (the takeover): `transfer_fail`.
    pub fn customer_refuses_transfer(&self, p: Pair) -> anyhow::Result<u64> {
        let (t, cu) = {
            let c = self.company();
            (
                c.staff_by_userid(&p.userid).context("unknown userid")?,
                c.customer_by_id(&p.external_userid)
                    .context("unknown customer")?,
            )
        };
        self.refuse_transfer(cu, t)
            .context("no pending transfer to this member")?;
        Ok(self.emit(Event::ChangeExternalContact {
            change_type: "transfer_fail".into(),
            user_id: p.userid,
            external_user_id: p.external_userid,
            state: None,
            welcome_code: None,
            source: None,
            fail_reason: Some("customer_refused".into()),
        }))
    }

    /// A member leaves the company (status 5): their customers wait in get_unassigned_list
    /// and their chats show status 1. No callback (contact-change events are out of scope).
    pub fn staff_resigns(&self, userid: &str) -> anyhow::Result<()> {
        let now = self.now();
        let mut c = self.company_mut();
        let s = c.staff_by_userid(userid).context("unknown userid")?;
        c.staff[s as usize].status = 5;
        c.staff[s as usize].dimission_time = now;
        for chat in c.chats.iter_mut().filter(|g| g.owner == s && !g.dismissed) {
            chat.status = 1;
        }
        Ok(())
    }

    fn chat_event(&self, chat: u32, change_type: &str, detail: Option<&str>) -> Event {
        let c = self.company();
        Event::ChangeExternalChat {
            chat_id: c.chat_id(chat),
            change_type: change_type.into(),
            update_detail: detail.map(Into::into),
            join_scene: None,
            quit_scene: None,
            mem_change_list: Vec::new(),
            last_mem_ver: None,
            cur_mem_ver: None,
        }
    }

    /// Someone joins a group chat; returns the member's id and the callback seq.
    pub fn member_joins_group(&self, req: JoinGroup) -> anyhow::Result<(String, u64)> {
        let now = self.now();
        let (id, chat, last, cur) = {
            let mut c = self.company_mut();
            let chat = c
                .chat_by_id(&req.chat_id)
                .filter(|&i| !c.chats[i as usize].dismissed)
                .context("unknown chat_id")?;
            let who = match req.member.as_deref().filter(|m| !m.is_empty()) {
                Some(m) => match (c.customer_by_id(m), c.staff_by_userid(m)) {
                    (Some(cu), _) => MemberRef::Customer(cu),
                    (None, Some(s)) => MemberRef::Staff(s),
                    _ => bail!("unknown member {m}"),
                },
                None => MemberRef::Customer(c.add_customer(1, None)),
            };
            ensure!(c.chat_member_pos(chat, who).is_none(), "already a member");
            let owner = c.chats[chat as usize].owner;
            let last = c.member_version(chat, c.chats[chat as usize].version);
            let g = &mut c.chats[chat as usize];
            g.members.push(ChatMember {
                who,
                join_time: now,
                join_scene: req.join_scene.max(1),
                invitor: if req.join_scene == 3 { NONE } else { owner },
            });
            g.version += 1;
            let version = g.version;
            let id = match who {
                MemberRef::Customer(cu) => c.external_userid(cu),
                MemberRef::Staff(s) => c.staff[s as usize].userid.clone(),
            };
            (id, chat, last, c.member_version(chat, version))
        };
        let mut e = self.chat_event(chat, "update", Some("add_member"));
        if let Event::ChangeExternalChat {
            join_scene,
            mem_change_list,
            last_mem_ver,
            cur_mem_ver,
            ..
        } = &mut e
        {
            *join_scene = Some(if req.join_scene == 3 { 3 } else { 0 });
            *mem_change_list = vec![id.clone()];
            *last_mem_ver = Some(last);
            *cur_mem_ver = Some(cur);
        }
        Ok((id, self.emit(e)))
    }

    /// Someone leaves or is removed from a group chat: `del_member`.
    pub fn member_leaves_group(&self, req: LeaveGroup) -> anyhow::Result<u64> {
        let (chat, last, cur) = {
            let mut c = self.company_mut();
            let chat = c
                .chat_by_id(&req.chat_id)
                .filter(|&i| !c.chats[i as usize].dismissed)
                .context("unknown chat_id")?;
            let who = match (
                c.customer_by_id(&req.member),
                c.staff_by_userid(&req.member),
            ) {
                (Some(cu), _) => MemberRef::Customer(cu),
                (None, Some(s)) => MemberRef::Staff(s),
                _ => bail!("unknown member {}", req.member),
            };
            ensure!(
                who != MemberRef::Staff(c.chats[chat as usize].owner),
                "the owner cannot leave; dismiss the chat"
            );
            let pos = c.chat_member_pos(chat, who).context("not a member")?;
            let last = c.member_version(chat, c.chats[chat as usize].version);
            let g = &mut c.chats[chat as usize];
            g.members.remove(pos);
            g.version += 1;
            let v = g.version;
            (chat, last, c.member_version(chat, v))
        };
        let mut e = self.chat_event(chat, "update", Some("del_member"));
        if let Event::ChangeExternalChat {
            quit_scene,
            mem_change_list,
            last_mem_ver,
            cur_mem_ver,
            ..
        } = &mut e
        {
            *quit_scene = Some(req.quit_scene.min(1));
            *mem_change_list = vec![req.member.clone()];
            *last_mem_ver = Some(last);
            *cur_mem_ver = Some(cur);
        }
        Ok(self.emit(e))
    }

    /// A member creates a group chat; returns its chat_id.
    pub fn group_created(&self, req: CreateGroup) -> anyhow::Result<String> {
        let now = self.now();
        let chat = {
            let mut c = self.company_mut();
            let owner = c
                .staff_by_userid(&req.owner)
                .filter(|&s| c.staff[s as usize].status == 1)
                .context("unknown owner")?;
            let mut members = vec![ChatMember {
                who: MemberRef::Staff(owner),
                join_time: now,
                join_scene: 1,
                invitor: NONE,
            }];
            for m in &req.members {
                let who = match (c.customer_by_id(m), c.staff_by_userid(m)) {
                    (Some(cu), _) => MemberRef::Customer(cu),
                    (None, Some(s)) => MemberRef::Staff(s),
                    _ => bail!("unknown member {m}"),
                };
                if !members.iter().any(|x| x.who == who) {
                    members.push(ChatMember {
                        who,
                        join_time: now,
                        join_scene: 1,
                        invitor: owner,
                    });
                }
            }
            c.chats.push(GroupChat {
                name: req.name,
                owner,
                create_time: now,
                notice: String::new(),
                members,
                admins: Vec::new(),
                version: 1,
                dismissed: false,
                status: 0,
                transfers: 0,
            });
            (c.chats.len() - 1) as u32
        };
        self.emit(self.chat_event(chat, "create", None));
        Ok(self.company().chat_id(chat))
    }

    /// A group chat is renamed: `update` / `change_name`.
    pub fn group_renamed(&self, chat_id: &str, name: &str) -> anyhow::Result<u64> {
        let chat = {
            let mut c = self.company_mut();
            let chat = c
                .chat_by_id(chat_id)
                .filter(|&i| !c.chats[i as usize].dismissed)
                .context("unknown chat_id")?;
            c.chats[chat as usize].name = name.to_string();
            chat
        };
        Ok(self.emit(self.chat_event(chat, "update", Some("change_name"))))
    }

    /// The owner dismisses a group chat: `dismiss`; groupchat/get then answers 40050.
    pub fn group_dismissed(&self, chat_id: &str) -> anyhow::Result<u64> {
        let chat = {
            let mut c = self.company_mut();
            let chat = c
                .chat_by_id(chat_id)
                .filter(|&i| !c.chats[i as usize].dismissed)
                .context("unknown chat_id")?;
            c.chats[chat as usize].dismissed = true;
            chat
        };
        Ok(self.emit(self.chat_event(chat, "dismiss", None)))
    }

    fn tag_event(&self, id: String, group: bool, change_type: &str) -> u64 {
        self.emit(Event::ChangeExternalTag {
            id,
            tag_type: if group { "tag_group" } else { "tag" }.into(),
            change_type: change_type.into(),
        })
    }

    /// The admin console creates tags; returns the new tag ids (and emits one `create` per
    /// tag, plus one for a new group).
    pub fn console_add_tags(&self, req: ConsoleAddTags) -> anyhow::Result<Vec<String>> {
        let now = self.now();
        let named: Vec<(String, u32)> = req.tags.iter().map(|t| (t.clone(), 0)).collect();
        let (group_new, group_id, ids) = {
            let mut c = self.company_mut();
            let before = c.tag_groups.len();
            let (g, created) = tags::add_tags(
                &mut c,
                req.group_id.as_deref(),
                req.group_name.as_deref(),
                0,
                &named,
                false,
                now,
            )
            .map_err(|(code, d)| anyhow!("errcode {code}: {d}"))?;
            let ids: Vec<String> = created
                .iter()
                .map(|&t| c.tags[t as usize].id.clone())
                .collect();
            (
                c.tag_groups.len() > before,
                c.tag_groups[g as usize].id.clone(),
                ids,
            )
        };
        if group_new {
            self.tag_event(group_id, true, "create");
        }
        for id in &ids {
            self.tag_event(id.clone(), false, "create");
        }
        Ok(ids)
    }

    /// The admin console renames/reorders a tag or group.
    pub fn console_edit_tag(&self, req: ConsoleEditTag) -> anyhow::Result<u64> {
        let r = tags::edit(
            &mut self.company_mut(),
            &req.id,
            req.name.as_deref(),
            req.order,
            false,
        )
        .map_err(|(code, d)| anyhow!("errcode {code}: {d}"))?;
        Ok(self.tag_event(req.id, matches!(r, TagRef::Group(_)), "update"))
    }

    /// The admin console deletes tags and/or groups.
    pub fn console_delete_tags(&self, req: ConsoleDeleteTags) -> anyhow::Result<()> {
        tags::delete(&mut self.company_mut(), &req.tag_id, &req.group_id, false)
            .map_err(|(code, d)| anyhow!("errcode {code}: {d}"))?;
        for id in req.tag_id {
            self.tag_event(id, false, "delete");
        }
        for id in req.group_id {
            self.tag_event(id, true, "delete");
        }
        Ok(())
    }
}
