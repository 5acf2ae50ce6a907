//! The company's data, stored compactly: plain `Vec`s indexed by `u32`, a follow-relation slab
//! with per-customer linked lists (no per-customer allocation), and names/ids derived from the
//! seed instead of stored. A million customers with 1.3 follows each fit in well under 200 MB.

use std::collections::HashMap;

use super::names;

/// "No index" marker in `u32` links.
pub const NONE: u32 = u32::MAX;

/// Hash salts for the id families, so a customer id never parses as a chat id.
pub(crate) const SALT_CUSTOMER: u64 = 11;
pub(crate) const SALT_CHAT: u64 = 12;
pub(crate) const SALT_TAG: u64 = 13;
pub(crate) const SALT_GROUP: u64 = 14;

/// A department (部门). Ids are 1..=n, 1 is the root.
#[derive(Clone, Debug)]
pub struct Department {
    pub id: u32,
    pub name: String,
    pub name_en: String,
    /// 0 for the root.
    pub parent: u32,
    pub order: u32,
    /// Staff indices of the department leaders.
    pub leaders: Vec<u32>,
}

/// A staff member (成员).
#[derive(Clone, Debug)]
pub struct Staff {
    pub userid: String,
    pub name: String,
    pub departments: Vec<u32>,
    pub position: String,
    /// 1 male, 2 female (sent as a string, as WeCom does).
    pub gender: u8,
    pub mobile: String,
    /// 1 active, 2 disabled, 4 not activated, 5 left the company (hidden from contact APIs,
    /// but its customers wait in get_unassigned_list).
    pub status: u8,
    /// Whether the member has 客户联系 enabled (appears in get_follow_user_list).
    pub contact_enabled: bool,
    /// Customers this member follows, in the order they were added (the cursor order).
    pub customers: Vec<u32>,
    /// Unix time the member left (status 5).
    pub dimission_time: i64,
}

impl Staff {
    /// Visible to contact APIs (user/get etc.): everyone but those who left.
    pub fn visible(&self) -> bool {
        self.status != 5
    }
}

/// An external contact (客户). Name and ids are derived from the index unless overridden.
#[derive(Clone, Debug)]
pub struct Customer {
    /// 1 WeChat user, 2 WeCom user.
    pub kind: u8,
    /// 0 unknown, 1 male, 2 female.
    pub gender: u8,
    /// Head of this customer's follow list in the slab, or [`NONE`].
    pub first_follow: u32,
    /// A name given by a scenario; otherwise the generated one.
    pub name: Option<Box<str>>,
}

/// Remark fields a member has edited; absent for almost all generated follows.
#[derive(Clone, Debug, Default)]
pub struct FollowExtra {
    pub remark: String,
    pub description: String,
    pub remark_mobiles: Vec<String>,
    pub remark_corp_name: String,
}

/// One (customer, staff) follow relation.
#[derive(Clone, Debug)]
pub struct Follow {
    pub customer: u32,
    pub staff: u32,
    /// Next follow of the same customer, or [`NONE`].
    pub next: u32,
    pub createtime: u32,
    pub add_way: u8,
    /// The customer added the member (oper_userid = the customer), not the other way round.
    pub by_customer: bool,
    /// Index into [`Company::states`]; 0 = no state.
    pub state: u32,
    /// Corp tag indices.
    pub tags: Box<[u32]>,
    pub extra: Option<Box<FollowExtra>>,
}

/// A corp tag group.
#[derive(Clone, Debug)]
pub struct TagGroup {
    pub id: String,
    pub name: String,
    pub create_time: i64,
    pub order: u32,
    pub deleted: bool,
    pub tags: Vec<u32>,
    /// Created through the API (an app may only edit/delete tags it created, API-FACTS §5).
    pub by_api: bool,
}

/// A corp tag.
#[derive(Clone, Debug)]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub group: u32,
    pub create_time: i64,
    pub order: u32,
    pub deleted: bool,
    pub by_api: bool,
}

/// Who a group-chat member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberRef {
    Staff(u32),
    Customer(u32),
}

/// A member of a group chat.
#[derive(Clone, Debug)]
pub struct ChatMember {
    pub who: MemberRef,
    pub join_time: i64,
    /// 1 direct invite, 2 invite link, 3 QR code.
    pub join_scene: u8,
    /// Staff index of the inviter, or [`NONE`].
    pub invitor: u32,
}

/// A customer group chat (客户群).
#[derive(Clone, Debug)]
pub struct GroupChat {
    pub name: String,
    pub owner: u32,
    pub create_time: i64,
    pub notice: String,
    pub members: Vec<ChatMember>,
    pub admins: Vec<u32>,
    /// Bumped on each member change; rendered as a 32-hex member_version.
    pub version: u64,
    pub dismissed: bool,
    /// groupchat/list status: 0 normal, 1 owner left, 2 inheriting, 3 inherited.
    pub status: u8,
    /// Resigned/on-job transfers so far (at most 2 allowed within 90 days for on-job).
    pub transfers: u8,
}

/// The whole generated company.
#[derive(Debug)]
pub struct Company {
    pub seed: u64,
    pub corp_name: String,
    pub departments: Vec<Department>,
    pub staff: Vec<Staff>,
    pub staff_index: HashMap<String, u32>,
    pub customers: Vec<Customer>,
    pub follows: Vec<Follow>,
    /// Free slots in `follows` (deleted relations), reused before growing.
    pub free_follows: Vec<u32>,
    pub tag_groups: Vec<TagGroup>,
    pub tags: Vec<Tag>,
    pub tag_index: HashMap<String, u32>,
    pub group_index: HashMap<String, u32>,
    pub chats: Vec<GroupChat>,
    /// Interned 「联系我」 states; index 0 is "".
    pub states: Vec<String>,
    pub state_index: HashMap<String, u32>,
}

impl Company {
    /// Moves every follow's add time into the last `days` days ending at `now` (unix seconds),
    /// keeping the generated spread: each follow's day and time of day come from its generated
    /// time, so the same company always spreads the same way; day 0 is today in China time
    /// (UTC+8), squeezed into the part of today that has passed. `days` 0 changes nothing.
    pub fn spread_recent_adds(&mut self, now: i64, days: u32) {
        if days == 0 {
            return;
        }
        const DAY: i64 = 86_400;
        const CHINA: i64 = 8 * 3600;
        let today_start = (now + CHINA).div_euclid(DAY) * DAY - CHINA;
        let elapsed = (now - today_start).max(1);
        for f in &mut self.follows {
            let age = (super::GEN_EPOCH - i64::from(f.createtime)).max(0);
            let day = (age / DAY) % i64::from(days);
            let in_day = age % DAY;
            let t = if day == 0 {
                today_start + in_day * elapsed / DAY
            } else {
                today_start - day * DAY + in_day
            };
            f.createtime = t.clamp(0, i64::from(u32::MAX)) as u32;
        }
    }

    /// The customer's external_userid (`wm…` WeChat, `wo…` WeCom users), 32 characters.
    pub fn external_userid(&self, idx: u32) -> String {
        let prefix = match self.customers.get(idx as usize) {
            Some(c) if c.kind == 2 => "wo",
            _ => "wm",
        };
        names::encoded_id(prefix, self.seed, SALT_CUSTOMER, idx)
    }

    /// Customer index for an external_userid, if it is one of ours.
    pub fn customer_by_id(&self, id: &str) -> Option<u32> {
        let prefix = id.get(..2)?;
        if prefix != "wm" && prefix != "wo" {
            return None;
        }
        let idx = names::decode_id(id, prefix, self.seed, SALT_CUSTOMER)?;
        let c = self.customers.get(idx as usize)?;
        ((c.kind == 2) == (prefix == "wo")).then_some(idx)
    }

    /// The chat_id of group chat `idx`.
    pub fn chat_id(&self, idx: u32) -> String {
        names::encoded_id("wr", self.seed, SALT_CHAT, idx)
    }

    /// Chat index for a chat_id (dismissed chats included).
    pub fn chat_by_id(&self, id: &str) -> Option<u32> {
        let idx = names::decode_id(id, "wr", self.seed, SALT_CHAT)?;
        ((idx as usize) < self.chats.len()).then_some(idx)
    }

    /// A fresh tag or tag-group id.
    pub fn new_tag_id(&self, group: bool) -> String {
        let (salt, n) = if group {
            (SALT_GROUP, self.tag_groups.len())
        } else {
            (SALT_TAG, self.tags.len())
        };
        names::encoded_id("et", self.seed, salt, n as u32)
    }

    /// Display name of a customer.
    pub fn customer_name(&self, idx: u32) -> String {
        match self
            .customers
            .get(idx as usize)
            .and_then(|c| c.name.as_deref())
        {
            Some(n) => n.to_string(),
            None => names::customer_name(self.seed, idx),
        }
    }

    /// WeChat unionid of a type-1 customer.
    pub fn unionid(&self, idx: u32) -> String {
        let mut s = String::from("oz");
        names::push_base62(&mut s, names::mix(self.seed, u64::from(idx), 404), 26);
        s
    }

    /// Staff index for a userid (members who left included).
    pub fn staff_by_userid(&self, userid: &str) -> Option<u32> {
        self.staff_index.get(userid).copied()
    }

    /// Iterates (slab index, follow) over a customer's follow relations.
    pub fn follows_of(&self, customer: u32) -> FollowIter<'_> {
        let first = self
            .customers
            .get(customer as usize)
            .map_or(NONE, |c| c.first_follow);
        FollowIter {
            company: self,
            next: first,
        }
    }

    /// The follow relation between a customer and a member, if any.
    pub fn follow_of(&self, customer: u32, staff: u32) -> Option<u32> {
        self.follows_of(customer)
            .find(|(_, f)| f.staff == staff)
            .map(|(i, _)| i)
    }

    /// Interns a 「联系我」 state.
    pub fn intern_state(&mut self, state: &str) -> u32 {
        if state.is_empty() {
            return 0;
        }
        if let Some(&i) = self.state_index.get(state) {
            return i;
        }
        let i = self.states.len() as u32;
        self.states.push(state.to_string());
        self.state_index.insert(state.to_string(), i);
        i
    }

    /// Adds a follow relation (the caller checked it does not exist yet); returns its slab index.
    pub fn add_follow(&mut self, mut follow: Follow) -> u32 {
        let (customer, staff) = (follow.customer, follow.staff);
        follow.next = self.customers[customer as usize].first_follow;
        let idx = match self.free_follows.pop() {
            Some(i) => {
                self.follows[i as usize] = follow;
                i
            }
            None => {
                self.follows.push(follow);
                (self.follows.len() - 1) as u32
            }
        };
        self.customers[customer as usize].first_follow = idx;
        self.staff[staff as usize].customers.push(customer);
        idx
    }

    /// Removes a follow relation; its slot is reused later.
    pub fn remove_follow(&mut self, idx: u32) {
        let Some(f) = self.follows.get(idx as usize) else {
            return;
        };
        let (customer, staff, next) = (f.customer, f.staff, f.next);
        if customer == NONE {
            return;
        }
        let head = &mut self.customers[customer as usize].first_follow;
        if *head == idx {
            *head = next;
        } else {
            let mut cur = *head;
            while cur != NONE {
                let n = self.follows[cur as usize].next;
                if n == idx {
                    self.follows[cur as usize].next = next;
                    break;
                }
                cur = n;
            }
        }
        if let Some(pos) = self.staff[staff as usize]
            .customers
            .iter()
            .position(|&c| c == customer)
        {
            self.staff[staff as usize].customers.remove(pos);
        }
        let slot = &mut self.follows[idx as usize];
        slot.customer = NONE;
        slot.next = NONE;
        slot.tags = Box::new([]);
        slot.extra = None;
        self.free_follows.push(idx);
    }

    /// Adds a customer (scenario: a new person adds a member); returns its index.
    pub fn add_customer(&mut self, kind: u8, name: Option<String>) -> u32 {
        self.customers.push(Customer {
            kind: if kind == 2 { 2 } else { 1 },
            gender: 0,
            first_follow: NONE,
            name: name.map(String::into_boxed_str),
        });
        (self.customers.len() - 1) as u32
    }

    /// The member_version string of a chat (32 hex digits like WeCom's md5).
    pub fn member_version(&self, chat: u32, version: u64) -> String {
        let a = names::mix(self.seed, u64::from(chat), version);
        let b = names::mix(a, version, 505);
        format!("{a:016x}{b:016x}")
    }

    /// Number of live follow relations.
    pub fn follow_count(&self) -> usize {
        self.follows.len() - self.free_follows.len()
    }

    /// Members of a chat that are customers with no follow relation left are still members;
    /// this finds a customer's position in a chat.
    pub fn chat_member_pos(&self, chat: u32, who: MemberRef) -> Option<usize> {
        self.chats
            .get(chat as usize)?
            .members
            .iter()
            .position(|m| m.who == who)
    }
}

/// Iterator over one customer's follow relations.
pub struct FollowIter<'a> {
    company: &'a Company,
    next: u32,
}

impl<'a> Iterator for FollowIter<'a> {
    type Item = (u32, &'a Follow);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == NONE {
            return None;
        }
        let idx = self.next;
        let f = self.company.follows.get(idx as usize)?;
        self.next = f.next;
        Some((idx, f))
    }
}
