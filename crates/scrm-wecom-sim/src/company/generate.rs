//! Generates a [`Company`] from a seed and sizes. Deterministic: structure comes from a
//! `StdRng` seeded with the seed, text from hashing (see `names`), and all times are relative
//! to a fixed epoch, never to the wall clock.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::*;
use super::names;
use crate::config::CompanySize;

/// Times of generated data lie before this instant (2026-11-01 00:00 +08:00), so two runs on
/// different days generate the same company.
pub const GEN_EPOCH: i64 = 1_793_462_400;

const TWO_YEARS: i64 = 2 * 365 * 86_400;

/// Builds the company. Linear in the sizes.
pub fn generate(seed: u64, size: &CompanySize) -> Company {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Company {
        seed,
        corp_name: "模拟科技有限公司".into(),
        departments: Vec::new(),
        staff: Vec::new(),
        staff_index: HashMap::new(),
        customers: Vec::with_capacity(size.customers as usize),
        follows: Vec::with_capacity(
            (f64::from(size.customers) * size.avg_follows.max(1.0)) as usize + 16,
        ),
        free_follows: Vec::new(),
        tag_groups: Vec::new(),
        tags: Vec::new(),
        tag_index: HashMap::new(),
        group_index: HashMap::new(),
        chats: Vec::new(),
        states: vec![String::new()],
        state_index: HashMap::new(),
    };
    for s in names::STATES {
        c.intern_state(s);
    }
    departments(&mut c, &mut rng, size.departments.max(1));
    staff(&mut c, &mut rng, size.staff.max(1));
    tags(&mut c, size.tag_groups, size.tags);
    customers(&mut c, &mut rng, size.customers, size.avg_follows);
    chats(
        &mut c,
        &mut rng,
        size.group_chats,
        size.members_per_group.max(1),
    );
    c
}

fn departments(c: &mut Company, rng: &mut StdRng, n: u32) {
    c.departments.push(Department {
        id: 1,
        name: c.corp_name.clone(),
        name_en: "SimCorp".into(),
        parent: 0,
        order: 100_000_000,
        leaders: Vec::new(),
    });
    for id in 2..=n {
        let k = (id - 2) as usize;
        let (zh, en) = names::DEPARTMENTS[k % names::DEPARTMENTS.len()];
        let round = k / names::DEPARTMENTS.len();
        let (name, name_en) = if round == 0 {
            (zh.to_string(), en.to_string())
        } else {
            (format!("{zh}{}", round + 1), format!("{en} {}", round + 1))
        };
        // Parents among earlier departments keep the tree acyclic; half hang off the root so
        // the tree stays shallow like real org charts.
        let parent = if rng.random_bool(0.5) {
            1
        } else {
            rng.random_range(1..id)
        };
        c.departments.push(Department {
            id,
            name,
            name_en,
            parent,
            order: rng.random_range(0..100_000),
            leaders: Vec::new(),
        });
    }
}

fn staff(c: &mut Company, rng: &mut StdRng, n: u32) {
    let ndept = c.departments.len() as u32;
    for i in 0..n {
        let (name, py) = names::staff_name(c.seed, i);
        let userid = format!("{py}{:04}", i + 1);
        let mut departments = vec![rng.random_range(1..=ndept)];
        if ndept > 1 && rng.random_bool(0.1) {
            let d = rng.random_range(1..=ndept);
            if d != departments[0] {
                departments.push(d);
            }
        }
        // The first three members are always active with 客户联系, so every company has
        // usable senders; the rest follow a realistic mix.
        let status = if i < 3 {
            1
        } else {
            match rng.random_range(0..100) {
                0..88 => 1,
                88..91 => 2,
                91..95 => 4,
                _ => 5,
            }
        };
        let contact_enabled = i < 3 || (matches!(status, 1 | 5) && rng.random_bool(0.85));
        let dimission_time = if status == 5 {
            GEN_EPOCH - rng.random_range(0..30 * 86_400)
        } else {
            0
        };
        c.staff_index.insert(userid.clone(), i);
        c.staff.push(Staff {
            userid,
            name,
            position: ["客户经理", "销售顾问", "客服专员", "运营专员", "主管"]
                [rng.random_range(0..5)]
            .into(),
            departments,
            gender: rng.random_range(1..=2),
            mobile: format!(
                "138{:08}",
                names::mix(c.seed, u64::from(i), 606) % 100_000_000
            ),
            status,
            contact_enabled,
            customers: Vec::new(),
            dimission_time,
        });
    }
    for d in 0..ndept as usize {
        if rng.random_bool(0.5) {
            c.departments[d].leaders.push(rng.random_range(0..n));
        }
    }
}

fn tags(c: &mut Company, groups: u32, total: u32) {
    if groups == 0 {
        return;
    }
    for g in 0..groups {
        let name = match names::TAG_GROUPS.get(g as usize) {
            Some((n, _)) => n.to_string(),
            None => format!("标签组{}", g + 1),
        };
        let id = c.new_tag_id(true);
        c.group_index.insert(id.clone(), g);
        c.tag_groups.push(TagGroup {
            id,
            name,
            create_time: GEN_EPOCH - TWO_YEARS + i64::from(g) * 3600,
            order: groups - g,
            deleted: false,
            tags: Vec::new(),
            by_api: false,
        });
    }
    // Tags are dealt round-robin so every group gets one before any gets two.
    for t in 0..total.max(groups) {
        let g = t % groups;
        let k = c.tag_groups[g as usize].tags.len();
        let name = match names::TAG_GROUPS
            .get(g as usize)
            .and_then(|(_, tags)| tags.get(k))
        {
            Some(n) => n.to_string(),
            None => format!("标签{}-{}", g + 1, k + 1),
        };
        let id = c.new_tag_id(false);
        let idx = c.tags.len() as u32;
        c.tag_index.insert(id.clone(), idx);
        c.tag_groups[g as usize].tags.push(idx);
        c.tags.push(Tag {
            id,
            name,
            group: g,
            create_time: GEN_EPOCH - TWO_YEARS + i64::from(t) * 60,
            order: 1000 - k as u32,
            deleted: false,
            by_api: false,
        });
    }
}

const ADD_WAYS: &[(u8, u32)] = &[
    (1, 40),
    (2, 10),
    (3, 15),
    (4, 8),
    (5, 5),
    (6, 7),
    (16, 10),
    (202, 5),
];

fn customers(c: &mut Company, rng: &mut StdRng, n: u32, avg_follows: f64) {
    let followers: Vec<u32> = (0..c.staff.len() as u32)
        .filter(|&s| c.staff[s as usize].contact_enabled)
        .collect();
    // 1 + geometric extra follows has mean 1/(1-q); solve for q from the wanted average.
    let q = (1.0 - 1.0 / avg_follows.max(1.0)).clamp(0.0, 0.95);
    let ntags = c.tags.len() as u32;
    let weight_total: u32 = ADD_WAYS.iter().map(|w| w.1).sum();
    let mut picked: Vec<u32> = Vec::with_capacity(8);
    for idx in 0..n {
        let kind = if rng.random_bool(0.85) { 1 } else { 2 };
        c.customers.push(Customer {
            kind,
            gender: rng.random_range(0..=2),
            first_follow: NONE,
            name: None,
        });
        picked.clear();
        let mut want = 1;
        while want < followers.len() && rng.random_bool(q) {
            want += 1;
        }
        while picked.len() < want {
            let s = followers[rng.random_range(0..followers.len())];
            if !picked.contains(&s) {
                picked.push(s);
            }
        }
        for &s in &picked {
            let mut w = rng.random_range(0..weight_total);
            let add_way = ADD_WAYS
                .iter()
                .find(|(_, weight)| {
                    if w < *weight {
                        true
                    } else {
                        w -= weight;
                        false
                    }
                })
                .map_or(1, |a| a.0);
            let state = if rng.random_bool(0.2) {
                rng.random_range(1..c.states.len() as u32)
            } else {
                0
            };
            let tags: Box<[u32]> = if ntags > 0 && rng.random_bool(0.4) {
                let mut t: Vec<u32> = (0..rng.random_range(1..=3))
                    .map(|_| rng.random_range(0..ntags))
                    .collect();
                t.sort_unstable();
                t.dedup();
                t.into_boxed_slice()
            } else {
                Box::new([])
            };
            c.add_follow(Follow {
                customer: idx,
                staff: s,
                next: NONE,
                createtime: (GEN_EPOCH - rng.random_range(86_400..TWO_YEARS)) as u32,
                add_way,
                by_customer: add_way == 1 && rng.random_bool(0.5),
                state,
                tags,
                extra: None,
            });
        }
    }
}

fn chats(c: &mut Company, rng: &mut StdRng, n: u32, per_group: u32) {
    let owners: Vec<u32> = (0..c.staff.len() as u32)
        .filter(|&s| c.staff[s as usize].contact_enabled && c.staff[s as usize].status == 1)
        .collect();
    if owners.is_empty() {
        return;
    }
    let ncust = c.customers.len() as u32;
    let nstaff = c.staff.len() as u32;
    for g in 0..n {
        let owner = owners[rng.random_range(0..owners.len())];
        let create_time = GEN_EPOCH - rng.random_range(86_400..TWO_YEARS);
        let size = rng
            .random_range(per_group.div_ceil(2)..=per_group + per_group / 2)
            .max(1);
        let mut members = vec![ChatMember {
            who: MemberRef::Staff(owner),
            join_time: create_time,
            join_scene: 1,
            invitor: NONE,
        }];
        let add = |who: MemberRef, rng: &mut StdRng, members: &mut Vec<ChatMember>| {
            if members.iter().any(|m| m.who == who) {
                return;
            }
            let join_scene = [1u8, 2, 3][rng.random_range(0..3)];
            members.push(ChatMember {
                who,
                join_time: create_time + rng.random_range(0..86_400 * 30),
                join_scene,
                invitor: if join_scene == 3 { NONE } else { owner },
            });
        };
        // Mostly the owner's own customers, as in real groups; a few colleagues and strangers.
        for _ in 1..size {
            let roll = rng.random_range(0..10);
            let own = &c.staff[owner as usize].customers;
            if roll == 0 && nstaff > 1 {
                add(
                    MemberRef::Staff(rng.random_range(0..nstaff)),
                    rng,
                    &mut members,
                );
            } else if roll < 8 && !own.is_empty() {
                let cu = own[rng.random_range(0..own.len())];
                add(MemberRef::Customer(cu), rng, &mut members);
            } else if ncust > 0 {
                add(
                    MemberRef::Customer(rng.random_range(0..ncust)),
                    rng,
                    &mut members,
                );
            }
        }
        let stem = names::GROUP_NAMES[(g as usize) % names::GROUP_NAMES.len()];
        c.chats.push(GroupChat {
            name: format!("{stem}{}", g + 1),
            owner,
            create_time,
            notice: if rng.random_bool(0.5) {
                "文明沟通，拒绝广告".into()
            } else {
                String::new()
            },
            members,
            admins: Vec::new(),
            version: 1,
            dismissed: false,
            status: 0,
            transfers: 0,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> CompanySize {
        CompanySize {
            customers: 200,
            ..CompanySize::default()
        }
    }

    #[test]
    fn same_seed_same_company() {
        let a = generate(9, &small());
        let b = generate(9, &small());
        assert_eq!(a.follow_count(), b.follow_count());
        assert_eq!(a.external_userid(17), b.external_userid(17));
        assert_eq!(a.customer_name(17), b.customer_name(17));
        let fa: Vec<_> = a
            .follows_of(17)
            .map(|(_, f)| (f.staff, f.createtime))
            .collect();
        let fb: Vec<_> = b
            .follows_of(17)
            .map(|(_, f)| (f.staff, f.createtime))
            .collect();
        assert_eq!(fa, fb);
        assert_ne!(
            generate(10, &small()).external_userid(17),
            a.external_userid(17)
        );
    }

    #[test]
    fn every_customer_has_a_follow_and_ids_parse() {
        let c = generate(1, &small());
        for i in 0..c.customers.len() as u32 {
            assert!(c.follows_of(i).count() >= 1);
            assert_eq!(c.customer_by_id(&c.external_userid(i)), Some(i));
        }
        for i in 0..c.chats.len() as u32 {
            assert_eq!(c.chat_by_id(&c.chat_id(i)), Some(i));
        }
    }

    #[test]
    fn removing_a_follow_unlinks_it_everywhere() {
        let mut c = generate(1, &small());
        let (fi, staff) = c.follows_of(3).map(|(i, f)| (i, f.staff)).next().unwrap();
        c.remove_follow(fi);
        assert!(c.follow_of(3, staff).is_none());
        assert!(!c.staff[staff as usize].customers.contains(&3));
    }

    #[test]
    fn recent_adds_fall_in_the_last_days_with_some_today() {
        let mut c = generate(1, &small());
        // 2026-11-23 10:00 China time.
        let now = 1_795_399_200;
        let today_start = now - 10 * 3600;
        c.spread_recent_adds(now, 30);
        let times: Vec<i64> = c.follows.iter().map(|f| i64::from(f.createtime)).collect();
        assert!(times.iter().all(|t| *t <= now && *t > now - 30 * 86_400));
        let today = times.iter().filter(|t| **t >= today_start).count();
        assert!(today > 0, "some follows are added today");
        assert!(today < times.len() / 5, "most are older: {today}");
        let mut again = generate(1, &small());
        again.spread_recent_adds(now, 30);
        assert_eq!(
            again
                .follows
                .iter()
                .map(|f| f.createtime)
                .collect::<Vec<_>>(),
            c.follows.iter().map(|f| f.createtime).collect::<Vec<_>>()
        );
    }
}
