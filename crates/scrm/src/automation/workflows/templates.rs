//! Seed 002's three example workflows as templates: 新客户获取 (new customer acquisition),
//! 私域培育 (nurturing) and 群运营 (group operations). Creating from a template makes a draft
//! workflow; what a company has to choose is passed when creating: the staff new customers are
//! assigned to (`staffId`, seed: 分配到流量池) and the CRM to push to (`webhookUrl`, seed: 如果配置了
//! CRM 对接) — a step whose choice is not given is left out, as the seed's conditions say. Tags
//! a template adds by name are found among the tenant's tags, or created (and pushed to WeCom).
//!
//! What the seed lists that WeCom's API cannot do is not in the templates: accepting friend
//! requests (a channel code's `skipVerify` does it) and liking moments (needs the device gateway).

use serde_json::{Value, json};

/// A template: key, name, description and the definition with `tagNames` on tag steps.
pub struct Template {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    build: fn(&Params) -> Value,
}

/// What a company chooses when creating from a template.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pub staff_id: Option<i64>,
    pub webhook_url: Option<String>,
}

impl Template {
    /// The definition for `p`, with tag names still to resolve (`tagNames` on tag steps).
    pub fn definition(&self, p: &Params) -> Value {
        (self.build)(p)
    }
}

/// The three templates.
pub fn all() -> &'static [Template] {
    &TEMPLATES
}

/// One template by key.
pub fn get(key: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.key == key)
}

static TEMPLATES: [Template; 3] = [
    Template {
        key: "new_customer",
        name: "新客户获取",
        description: "用户扫描渠道码添加好友后：随机 1-5 秒、再等 3 秒发送欢迎消息，打上新客户标签，分配跟进人（staffId），推送到 CRM（webhookUrl）。",
        build: new_customer,
    },
    Template {
        key: "nurturing",
        name: "私域培育",
        description: "客户添加满 3 天且 3 天内无互动：在工作日 10:00-12:00 从内容库随机发送一条关怀消息，并把客户阶段从培育期更新为活跃期。",
        build: nurturing,
    },
    Template {
        key: "group_operations",
        name: "群运营",
        description: "每日定时，对每个客户群：08:30 早安问候 + 今日话题，12:00 午间互动，20:00 晚间总结，23:00 统计群活跃数据。",
        build: group_operations,
    },
];

fn new_customer(p: &Params) -> Value {
    let mut steps = vec![
        json!({"key": "jitter", "name": "随机延迟 1-5 秒", "type": "delay", "duration": "1s", "maxDuration": "5s"}),
        json!({"key": "wait", "name": "延迟 3 秒", "type": "delay", "duration": "3s"}),
        json!({"key": "welcome", "name": "发送欢迎消息", "type": "send_message", "text": "您好，感谢关注！"}),
        json!({"key": "tag", "name": "自动打标签", "type": "add_tag", "tagNames": ["新客户"]}),
    ];
    if let Some(staff) = p.staff_id {
        steps.push(json!({"key": "assign", "name": "分配到流量池", "type": "assign_owner", "staffId": staff}));
    }
    if let Some(url) = &p.webhook_url {
        steps.push(json!({"key": "crm", "name": "推送到 CRM", "type": "webhook", "url": url}));
    }
    json!({
        "name": "新客户获取",
        "description": "seed 002 工作流示例 1：用户扫描渠道码（渠道码的自动通过好友请求由 skipVerify 完成）",
        "trigger": {"type": "customer_added"},
        "steps": steps,
    })
}

fn nurturing(_: &Params) -> Value {
    json!({
        "name": "私域培育",
        "description": "seed 002 工作流示例 2：客户添加满 3 天（朋友圈点赞需要设备网关，不在此模板中）",
        "trigger": {"type": "customer_added"},
        "steps": [
            {"key": "wait3d", "name": "添加满 3 天", "type": "delay", "duration": "3d"},
            {"key": "quiet", "name": "3 天内无互动", "type": "condition", "when": [{"noInteractionDays": 3}], "otherwise": "stop"},
            {"key": "hours", "name": "工作日 10:00-12:00", "type": "window", "days": [1, 2, 3, 4, 5], "start": "10:00", "end": "12:00"},
            {"key": "care", "name": "发送关怀消息", "type": "send_message", "texts": [
                "最近怎么样？有任何问题随时找我～",
                "天气转凉，注意添衣保暖，有需要随时联系我。",
                "给您整理了一份实用资料，需要的话回复我就发给您。"
            ]},
            {"key": "stage_check", "name": "处于培育期", "type": "condition", "when": [{"stageIn": ["new", "nurturing"]}], "otherwise": "stop"},
            {"key": "stage", "name": "培育期 → 活跃期", "type": "set_stage", "stage": "active"}
        ]
    })
}

fn group_operations(_: &Params) -> Value {
    json!({
        "name": "群运营",
        "description": "seed 002 工作流示例 3：每日定时",
        "trigger": {"type": "schedule", "cron": "0 8 * * *", "subject": "group"},
        "steps": [
            {"key": "morning", "name": "08:30", "type": "window", "start": "08:30", "end": "09:30"},
            {"key": "greeting", "name": "早安问候", "type": "send_message", "text": "早上好！今日话题：你今天最想完成的一件事是什么？"},
            {"key": "noon", "name": "12:00", "type": "window", "start": "12:00", "end": "13:00"},
            {"key": "interact", "name": "午间互动", "type": "send_message", "text": "午间小投票：今天午饭吃什么？回复 1 米饭 2 面食 3 其他"},
            {"key": "evening", "name": "20:00", "type": "window", "start": "20:00", "end": "21:00"},
            {"key": "summary", "name": "晚间总结", "type": "send_message", "text": "今日精华已整理，明日预告：敬请期待！"},
            {"key": "late", "name": "23:00", "type": "window", "start": "23:00", "end": "24:00"},
            {"key": "stats", "name": "活跃度统计", "type": "group_stats"}
        ]
    })
}

/// Tag names a template's steps refer to (`tagNames`), in order, without repeats.
pub fn tag_names(def: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in def["steps"].as_array().into_iter().flatten() {
        for n in s["tagNames"].as_array().into_iter().flatten() {
            if let Some(n) = n.as_str()
                && !out.iter().any(|o| o == n)
            {
                out.push(n.to_string());
            }
        }
    }
    out
}

/// Replace each step's `tagNames` with `tagIds` from `resolve` (name → id).
pub fn resolve_tags(def: &mut Value, resolve: &dyn Fn(&str) -> Option<i64>) {
    for s in def["steps"].as_array_mut().into_iter().flatten() {
        if let Some(names) = s.as_object_mut().and_then(|o| o.remove("tagNames")) {
            let ids: Vec<i64> = names
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().and_then(resolve))
                .collect();
            s["tagIds"] = json!(ids);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::automation::workflows::model;

    #[test]
    fn every_template_is_a_valid_definition() {
        let p = Params {
            staff_id: Some(1),
            webhook_url: Some("https://crm.example.com/hook".into()),
        };
        for t in all() {
            let mut v = t.definition(&p);
            resolve_tags(&mut v, &|_| Some(7));
            let d = model::parse(v).unwrap_or_else(|e| panic!("{}: {e:?}", t.key));
            assert!(
                model::check(&d).is_empty(),
                "{}: {:?}",
                t.key,
                model::check(&d)
            );
        }
    }
}
