//! Deterministic "random" text derived from (seed, index) by hashing, so a million customers
//! need no stored names or ids: `external_userid`, names, unionids and avatars are recomputed
//! on demand and always come out the same for the same seed.

/// splitmix64 finaliser over (seed, a, salt): cheap, well mixed, stable across platforms
/// and crate versions (unlike `StdRng`, whose algorithm `rand` may change).
pub fn mix(seed: u64, a: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const B62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Appends `n` base62 characters drawn from a hash stream seeded by `h`.
pub fn push_base62(out: &mut String, mut h: u64, n: usize) {
    let mut left = 10; // a u64 gives 10 full base62 digits
    for i in 0..n {
        if left == 0 {
            h = mix(h, i as u64, 7);
            left = 10;
        }
        out.push(B62[(h % 62) as usize] as char);
        h /= 62;
        left -= 1;
    }
}

/// An id of WeCom's usual 32-character shape that encodes `idx` in its last 8 hex digits, so it
/// can be parsed back without an index; the 22 hash characters make guessed ids fail.
pub fn encoded_id(prefix: &str, seed: u64, salt: u64, idx: u32) -> String {
    let mut s = String::with_capacity(32);
    s.push_str(prefix);
    push_base62(
        &mut s,
        mix(seed, u64::from(idx), salt),
        24usize.saturating_sub(prefix.len()),
    );
    s.push_str(&format!("{idx:08x}"));
    s
}

/// Inverse of [`encoded_id`]: the index if the id is well formed and genuine.
pub fn decode_id(id: &str, prefix: &str, seed: u64, salt: u64) -> Option<u32> {
    if id.len() != 32 || !id.starts_with(prefix) || !id.is_ascii() {
        return None;
    }
    let idx = u32::from_str_radix(&id[24..], 16).ok()?;
    (encoded_id(prefix, seed, salt, idx) == id).then_some(idx)
}

/// Surnames with pinyin (for userids).
pub const SURNAMES: &[(&str, &str)] = &[
    ("王", "wang"),
    ("李", "li"),
    ("张", "zhang"),
    ("刘", "liu"),
    ("陈", "chen"),
    ("杨", "yang"),
    ("黄", "huang"),
    ("赵", "zhao"),
    ("吴", "wu"),
    ("周", "zhou"),
    ("徐", "xu"),
    ("孙", "sun"),
    ("马", "ma"),
    ("朱", "zhu"),
    ("胡", "hu"),
    ("郭", "guo"),
    ("何", "he"),
    ("林", "lin"),
    ("罗", "luo"),
    ("高", "gao"),
    ("欧阳", "ouyang"),
    ("司马", "sima"),
];

const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "华", "玉兰", "萍", "鹏", "辉", "婷", "雪", "琳", "晨",
    "浩然", "子涵", "欣怡", "梓萱", "思远", "一诺", "宇轩",
];

const EMOJI: &[&str] = &["😀", "🌸", "🍀", "⭐", "🐱", "🎉", "☀️", "🌙", "🍵", "🚀"];

const NICK: &[&str] = &["小", "阿", "老"];

const COMPANIES: &[&str] = &[
    "腾讯",
    "阿里巴巴",
    "华为",
    "小米",
    "京东",
    "美团",
    "字节跳动",
    "网易",
    "百度",
    "比亚迪",
];

/// A customer's display name: mostly Chinese real names, some nicknames, some with emoji.
pub fn customer_name(seed: u64, idx: u32) -> String {
    let h = mix(seed, u64::from(idx), 101);
    let (sur, _) = SURNAMES[(h % SURNAMES.len() as u64) as usize];
    let given = GIVEN[((h >> 8) % GIVEN.len() as u64) as usize];
    let mut name = match (h >> 16) % 10 {
        0 => format!("{}{}", NICK[((h >> 20) % NICK.len() as u64) as usize], sur),
        1 => format!(
            "{sur}{given}{}",
            GIVEN[((h >> 24) % GIVEN.len() as u64) as usize]
        ),
        _ => format!("{sur}{given}"),
    };
    if (h >> 32).is_multiple_of(8) {
        name.push_str(EMOJI[((h >> 36) % EMOJI.len() as u64) as usize]);
    }
    name
}

/// (name, pinyin) of a staff member.
pub fn staff_name(seed: u64, idx: u32) -> (String, String) {
    let h = mix(seed, u64::from(idx), 202);
    let (sur, py) = SURNAMES[(h % SURNAMES.len() as u64) as usize];
    let given = GIVEN[((h >> 8) % GIVEN.len() as u64) as usize];
    (format!("{sur}{given}"), py.to_string())
}

/// Company of a WeCom-type customer (type 2).
pub fn company_name(seed: u64, idx: u32) -> &'static str {
    COMPANIES[(mix(seed, u64::from(idx), 303) % COMPANIES.len() as u64) as usize]
}

/// Department names, used in order; repeats get a number.
pub const DEPARTMENTS: &[(&str, &str)] = &[
    ("销售部", "Sales"),
    ("市场部", "Marketing"),
    ("客户成功部", "Customer Success"),
    ("华东大区", "East"),
    ("华南大区", "South"),
    ("华北大区", "North"),
    ("技术部", "Engineering"),
    ("运营部", "Operations"),
    ("客服中心", "Service"),
    ("渠道部", "Channels"),
];

/// Corp tag groups with their usual tags; sizes beyond this table get generic names.
pub const TAG_GROUPS: &[(&str, &[&str])] = &[
    ("客户等级", &["VIP", "重要", "普通", "潜在"]),
    ("意向程度", &["高意向", "中意向", "低意向"]),
    ("来源渠道", &["门店", "线上广告", "老客推荐", "展会"]),
    ("所属行业", &["教育", "医疗", "零售", "金融", "制造"]),
    ("地区", &["上海", "北京", "广州", "深圳", "杭州"]),
];

/// 「联系我」 states found on generated follows.
pub const STATES: &[&str] = &[
    "qr_store_01",
    "qr_event_2026",
    "ad_channel_a",
    "poster_spring",
    "link_wx_01",
];

/// Group chat name stems.
pub const GROUP_NAMES: &[&str] = &[
    "VIP客户群",
    "售后服务群",
    "新品体验群",
    "会员福利群",
    "区域交流群",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_ids_round_trip_and_reject_forgeries() {
        let id = encoded_id("wm", 7, 1, 123_456);
        assert_eq!(id.len(), 32);
        assert!(id.starts_with("wm"));
        assert_eq!(decode_id(&id, "wm", 7, 1), Some(123_456));
        assert_eq!(decode_id(&id, "wm", 8, 1), None);
        let mut forged = id.clone();
        forged.replace_range(5..6, if &id[5..6] == "A" { "B" } else { "A" });
        assert_eq!(decode_id(&forged, "wm", 7, 1), None);
    }

    #[test]
    fn names_are_deterministic() {
        assert_eq!(customer_name(1, 5), customer_name(1, 5));
        assert!(!customer_name(1, 5).is_empty());
    }
}
