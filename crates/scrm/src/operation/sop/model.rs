//! The template body as the seed shows it, checked into a [`Template`]: types in range, delay
//! units, and `actionContent` per step type —
//! 1 send message `{"content":"…"}` or `{"messageContent":{type,data}}`; 2 tag `{"tagIds":[…]}`;
//! 3 push material `{"materialId":…}`; 4 assign `{"staffId":…}`; 5 remind staff `{"content":"…"}`.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{ApiError, ApiResult};
use crate::operation::content;

/// The create/update body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    pub template_name: Option<String>,
    pub template_type: Option<i64>,
    pub trigger_type: Option<i64>,
    pub description: Option<String>,
    /// Trigger 2: `{"tagIds":[…]}`; trigger 3: `{"groupIds":[…]}`; empty = any.
    pub trigger_config: Option<Value>,
    pub status: Option<i64>,
    pub steps: Option<Vec<StepBody>>,
}

/// One step of the body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepBody {
    pub step_name: Option<String>,
    pub step_type: Option<i64>,
    pub delay_time: Option<i64>,
    pub delay_unit: Option<String>,
    pub action_content: Option<Value>,
}

/// A checked template.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: String,
    pub template_type: i64,
    pub trigger_type: i64,
    pub description: Option<String>,
    pub trigger_config: Value,
    pub status: i64,
    pub steps: Vec<Step>,
}

/// A checked step.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub step_type: i64,
    pub delay_time: i64,
    pub delay_unit: String,
    pub action_content: Value,
}

/// Milliseconds of a delay.
pub fn delay_ms(time: i64, unit: &str) -> i64 {
    let unit_ms = match unit {
        "minute" => 60_000,
        "hour" => 3_600_000,
        _ => 86_400_000,
    };
    time.saturating_mul(unit_ms)
}

fn ids(v: &Value, key: &str) -> Option<Vec<i64>> {
    v.get(key)?.as_array()?.iter().map(Value::as_i64).collect()
}

fn check_action(i: usize, template_type: i64, step_type: i64, a: &Value) -> ApiResult<Value> {
    let field = format!("steps[{i}].actionContent");
    if !a.is_object() {
        return Err(ApiError::field(field, "must be an object"));
    }
    let text = |key: &str| {
        a.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    match step_type {
        1 => {
            if let Some(mc) = a.get("messageContent") {
                content::parse(mc)?;
            } else {
                let t = text("content").ok_or_else(|| {
                    ApiError::field(&field, "send message needs content or messageContent")
                })?;
                if t.len() > 4000 {
                    return Err(ApiError::field(&field, "content is longer than 4000 bytes"));
                }
            }
        }
        2 => {
            if template_type == 2 {
                return Err(ApiError::field(&field, "group SOPs cannot tag"));
            }
            match ids(a, "tagIds") {
                Some(t) if !t.is_empty() && t.iter().all(|x| *x > 0) => {}
                _ => return Err(ApiError::field(&field, "tag needs tagIds (positive ids)")),
            }
        }
        3 => {
            if a.get("materialId")
                .and_then(Value::as_i64)
                .is_none_or(|m| m <= 0)
            {
                return Err(ApiError::field(&field, "push material needs materialId"));
            }
        }
        4 => {
            if template_type == 2 {
                return Err(ApiError::field(
                    &field,
                    "group SOPs cannot assign customers",
                ));
            }
            if a.get("staffId").and_then(Value::as_i64).is_none() && text("staffUserid").is_none() {
                return Err(ApiError::field(
                    &field,
                    "assign needs staffId or staffUserid",
                ));
            }
        }
        _ => {
            let t = text("content")
                .ok_or_else(|| ApiError::field(&field, "remind staff needs content"))?;
            if t.len() > 2048 {
                return Err(ApiError::field(&field, "content is longer than 2048 bytes"));
            }
        }
    }
    Ok(a.clone())
}

/// Check a body into a template.
pub fn check(b: TemplateBody) -> ApiResult<Template> {
    let name = b
        .template_name
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::field("templateName", "is required"))?;
    if name.chars().count() > 100 {
        return Err(ApiError::field("templateName", "at most 100 characters"));
    }
    let template_type = b.template_type.unwrap_or(1);
    if !(1..=2).contains(&template_type) {
        return Err(ApiError::field(
            "templateType",
            "must be 1 (customer) or 2 (group)",
        ));
    }
    let trigger_type = b
        .trigger_type
        .ok_or_else(|| ApiError::field("triggerType", "is required"))?;
    if !(1..=4).contains(&trigger_type) {
        return Err(ApiError::field("triggerType", "must be 1-4"));
    }
    let trigger_config = b.trigger_config.unwrap_or_else(|| json!({}));
    if !trigger_config.is_object() {
        return Err(ApiError::field("triggerConfig", "must be an object"));
    }
    let steps = b
        .steps
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::field("steps", "at least one step is required"))?;
    if steps.len() > 50 {
        return Err(ApiError::field("steps", "at most 50 steps"));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.into_iter().enumerate() {
        let step_type = s
            .step_type
            .filter(|t| (1..=5).contains(t))
            .ok_or_else(|| ApiError::field(format!("steps[{i}].stepType"), "must be 1-5"))?;
        let delay_time = s.delay_time.unwrap_or(0);
        if !(0..=3650 * 24 * 60).contains(&delay_time) {
            return Err(ApiError::field(
                format!("steps[{i}].delayTime"),
                "must be 0 or more",
            ));
        }
        let delay_unit = s.delay_unit.unwrap_or_else(|| "minute".into());
        if !["minute", "hour", "day"].contains(&delay_unit.as_str()) {
            return Err(ApiError::field(
                format!("steps[{i}].delayUnit"),
                "must be minute, hour or day",
            ));
        }
        let action = s
            .action_content
            .ok_or_else(|| ApiError::field(format!("steps[{i}].actionContent"), "is required"))?;
        let action_content = check_action(i, template_type, step_type, &action)?;
        out.push(Step {
            name: s.step_name.unwrap_or_else(|| format!("step {}", i + 1)),
            step_type,
            delay_time,
            delay_unit,
            action_content,
        });
    }
    Ok(Template {
        name,
        template_type,
        trigger_type,
        description: b.description,
        trigger_config,
        status: b.status.unwrap_or(1),
        steps: out,
    })
}
