//! A workflow definition: its trigger and ordered steps, the same shape in JSON (the API's body)
//! and YAML (import/export), checked here for everything that needs no database (the
//! references to tags, staff, stages, groups and materials are checked in [`super::store`]).
//! Every problem names its field: `trigger.cron`, `steps[2].duration`, `steps[1].when[0].op`.

use chrono::{Datelike, NaiveTime, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::error::FieldError;

/// At most this many steps in one workflow.
pub const MAX_STEPS: usize = 50;
/// A delay is at most a year.
const MAX_DELAY_MS: i64 = 366 * 86_400_000;

/// A workflow definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
}

/// What starts a run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerType {
    /// A customer added a member (add_external_contact, or a customer created in scrm).
    CustomerAdded,
    /// A customer got one of `tagIds` (any tag when empty).
    TagAdded,
    /// A customer joined one of `groupIds` (any group chat when empty).
    JoinedGroup,
    /// A customer and a member stopped being friends (WeCom's del_external_contact /
    /// del_follow_user callbacks): `deletedBy` `customer` (the customer deleted the member),
    /// `staff` (the member deleted the customer), or either when absent.
    CustomerDeleted,
    /// A customer's stage changed to one of `stages` (any stage when empty).
    StageChanged,
    /// On `cron` (Asia/Shanghai), for every subject of the audience.
    Schedule,
    /// When a condition on a customer's time line becomes true: `addedDaysAgo` N starts a run
    /// for each customer once N days have passed since they were added (checked every
    /// [`CONDITION_CRON`]; customers whose moment passed before the workflow was published are
    /// not swept in).
    Condition,
    /// Started through the API for chosen customers.
    #[default]
    Manual,
}

impl TriggerType {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::CustomerAdded => "customer_added",
            TriggerType::TagAdded => "tag_added",
            TriggerType::JoinedGroup => "joined_group",
            TriggerType::CustomerDeleted => "customer_deleted",
            TriggerType::StageChanged => "stage_changed",
            TriggerType::Schedule => "schedule",
            TriggerType::Condition => "condition",
            TriggerType::Manual => "manual",
        }
    }
}

/// Who a run acts on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    #[default]
    Customer,
    /// A group chat (scheduled group operations).
    Group,
}

impl Subject {
    pub fn code(self) -> i64 {
        match self {
            Subject::Customer => 1,
            Subject::Group => 2,
        }
    }
}

/// The trigger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub kind: TriggerType,
    /// tag_added: the tags that start a run (empty: any); schedule: customers with any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_ids: Vec<i64>,
    /// joined_group: the group chats (empty: any); schedule with subject group: these chats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_ids: Vec<i64>,
    /// schedule: a cron expression (5 or 6 fields), read in Asia/Shanghai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// schedule: runs per customer (default) or per group chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// customer_deleted: who deleted whom (`customer` or `staff`); either when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    /// stage_changed: the stages a change into starts a run (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// condition: start a customer's run this many days after they were added (1-365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_days_ago: Option<i64>,
}

/// How often a condition trigger looks for customers whose moment has come (Asia/Shanghai).
pub const CONDITION_CRON: &str = "*/5 * * * *";

impl Trigger {
    /// The cron of the engine schedule a published workflow with this trigger keeps: its own
    /// for a schedule, the periodic check of a condition, none for the others.
    pub fn schedule_cron(&self) -> Option<&str> {
        match self.kind {
            TriggerType::Schedule => self.cron.as_deref(),
            TriggerType::Condition => Some(CONDITION_CRON),
            _ => None,
        }
    }

    /// Who the runs of this trigger act on.
    pub fn subject(&self) -> Subject {
        if self.kind == TriggerType::Schedule {
            self.subject.unwrap_or_default()
        } else {
            Subject::Customer
        }
    }
}

/// A step's type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    /// Wait `duration` (or a random time between `duration` and `maxDuration`).
    Delay,
    /// Go on when every clause of `when` holds; else `otherwise`: stop, or goto:<key>.
    Condition,
    /// Act only on `days` between `start` and `end` (Asia/Shanghai); else wait for the window.
    Window,
    /// add_msg_template to the customer (or group chat) as its owner: `text` (or one of
    /// `texts` at random) with `{nickname}` `{date}` `{staff}`, and `materialIds`.
    SendMessage,
    /// Add `tagIds` (scrm and WeCom).
    AddTag,
    /// Remove `tagIds` (scrm and WeCom).
    RemoveTag,
    /// Make `staffId` the owner.
    AssignOwner,
    /// Hand the customer to a member of traffic pool `poolId` (its strategy, caps and working
    /// hours; waits for a member when none takes customers now).
    AssignPool,
    /// Move the customer to `stage`.
    SetStage,
    /// A WeCom app message to the owner (or `userids`): `text` with variables.
    RemindStaff,
    /// POST the run and its subject as JSON to `url` (a CRM, say).
    Webhook,
    /// Record the group chat's members, joins and leaves of the day in the step log.
    GroupStats,
}

impl StepType {
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Delay => "delay",
            StepType::Condition => "condition",
            StepType::Window => "window",
            StepType::SendMessage => "send_message",
            StepType::AddTag => "add_tag",
            StepType::RemoveTag => "remove_tag",
            StepType::AssignOwner => "assign_owner",
            StepType::AssignPool => "assign_pool",
            StepType::SetStage => "set_stage",
            StepType::RemindStaff => "remind_staff",
            StepType::Webhook => "webhook",
            StepType::GroupStats => "group_stats",
        }
    }

    /// Whether the step can act on a group chat.
    fn for_groups(self) -> bool {
        matches!(
            self,
            StepType::Delay
                | StepType::Window
                | StepType::SendMessage
                | StepType::RemindStaff
                | StepType::Webhook
                | StepType::GroupStats
        )
    }
}

/// One step. Which fields apply depends on `type`; a field another type uses is refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Unique in the workflow (`[A-Za-z0-9_-]`, ≤ 64); `s<n>` when absent. Conditions jump to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: StepType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Clause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub texts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub material_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_ids: Vec<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub userids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_id: Option<i64>,
}

/// One clause of a condition: exactly one of its kinds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clause {
    /// The customer has any of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub has_tags: Vec<i64>,
    /// The customer has none of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lacks_tags: Vec<i64>,
    /// The customer's stage is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage_in: Vec<String>,
    /// A customer field compared with `op` to `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// No interaction (last activity) in this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_interaction_days: Option<i64>,
}

/// Customer fields a condition can compare, with their column.
pub const FIELDS: &[(&str, &str)] = &[
    ("name", "name"),
    ("gender", "gender"),
    ("type", "type"),
    ("stage", "stage"),
    ("remark", "remark"),
    ("description", "description"),
    ("corpName", "corp_name"),
    ("channel", "channel"),
    ("province", "province"),
    ("city", "city"),
    ("mobile", "mobile"),
    ("addTime", "add_time"),
    ("lastActiveAt", "last_active_at"),
];

/// Comparison operators.
pub const OPS: &[&str] = &[
    "eq",
    "ne",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "empty",
    "not_empty",
];

/// What a condition does when it does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Otherwise {
    Stop,
    Goto(String),
}

/// `otherwise` of a step (default stop).
pub fn otherwise(s: &Step) -> Otherwise {
    match s.otherwise.as_deref().map(str::trim) {
        None | Some("") | Some("stop") => Otherwise::Stop,
        Some(o) => Otherwise::Goto(o.strip_prefix("goto:").unwrap_or(o).trim().to_string()),
    }
}

/// The key of step `i`.
pub fn key_of(s: &Step, i: usize) -> String {
    s.key
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| format!("s{}", i + 1))
}

/// Parse a JSON value into a definition; a problem names the field it is in.
pub fn parse(v: Value) -> Result<Definition, FieldError> {
    serde_path_to_error::deserialize::<_, Definition>(v).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let prefix = if path == "." { String::new() } else { path };
        // serde names a missing or unknown field in the message, not in the path.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string);
        let field = match named {
            Some(n) if !prefix.ends_with(&n) => {
                if prefix.is_empty() {
                    n
                } else {
                    format!("{prefix}.{n}")
                }
            }
            _ if prefix.is_empty() => "definition".to_string(),
            _ => prefix,
        };
        FieldError { field, message }
    })
}

/// Parse a YAML document into a definition.
pub fn from_yaml(text: &str) -> Result<Definition, FieldError> {
    let v: Value = serde_norway::from_str(text).map_err(|e| FieldError {
        field: "yaml".into(),
        message: format!("not valid YAML: {e}"),
    })?;
    if !v.is_object() {
        return Err(FieldError {
            field: "yaml".into(),
            message: "must be a mapping with name, trigger and steps".into(),
        });
    }
    parse(v)
}

/// The definition as YAML.
pub fn to_yaml(d: &Definition) -> anyhow::Result<String> {
    Ok(serde_norway::to_string(d)?)
}

/// A duration such as `90s`, `5m`, `2h`, `3d` or `1h30m`, in milliseconds.
pub fn duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

fn hhmm(s: &str) -> Option<u32> {
    if s == "24:00" {
        return Some(24 * 60);
    }
    let t = NaiveTime::parse_from_str(s, "%H:%M").ok()?;
    Some(t.hour() * 60 + t.minute())
}

/// When a window step lets a run act: `now` when inside the window, else the next opening
/// (Asia/Shanghai; `days` 1 = Monday … 7 = Sunday, empty = every day).
pub fn window_opens_at(s: &Step, now_ms: i64) -> i64 {
    let tz = crate::automation::shanghai();
    let start = s.start.as_deref().and_then(hhmm).unwrap_or(0);
    let end = s.end.as_deref().and_then(hhmm).unwrap_or(24 * 60);
    let Some(now) = tz.timestamp_millis_opt(now_ms).single() else {
        return now_ms;
    };
    let day_ok =
        |d: chrono::Weekday| s.days.is_empty() || s.days.contains(&(d.number_from_monday() as i64));
    let minute = now.hour() * 60 + now.minute();
    if day_ok(now.weekday()) && minute >= start && minute < end {
        return now_ms;
    }
    for offset in 0..8 {
        let date = now.date_naive() + chrono::Days::new(offset);
        if !day_ok(date.weekday()) {
            continue;
        }
        let Some(open) = date
            .and_hms_opt(start / 60, start % 60, 0)
            .and_then(|t| tz.from_local_datetime(&t).single())
        else {
            continue;
        };
        let open = open.timestamp_millis();
        if open > now_ms {
            return open;
        }
    }
    now_ms
}

fn err(field: String, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Check a parsed definition (no database): every problem, each naming its field.
pub fn check(d: &Definition) -> Vec<FieldError> {
    let mut out = Vec::new();
    let name = d.name.trim();
    if name.is_empty() {
        out.push(err("name".into(), "is required"));
    } else if name.chars().count() > 100 {
        out.push(err("name".into(), "at most 100 characters"));
    }
    let t = &d.trigger;
    let kind = t.kind;
    if !t.tag_ids.is_empty() && !matches!(kind, TriggerType::TagAdded | TriggerType::Schedule) {
        out.push(err(
            "trigger.tagIds".into(),
            "only for tag_added and schedule",
        ));
    }
    let takes_groups = kind == TriggerType::JoinedGroup
        || (kind == TriggerType::Schedule && t.subject() == Subject::Group);
    if !t.group_ids.is_empty() && !takes_groups {
        out.push(err(
            "trigger.groupIds".into(),
            "only for joined_group and a schedule with subject group",
        ));
    }
    if kind == TriggerType::Schedule && t.subject() == Subject::Group && !t.tag_ids.is_empty() {
        out.push(err(
            "trigger.tagIds".into(),
            "a schedule for group chats chooses them by groupIds",
        ));
    }
    if t.subject.is_some() && kind != TriggerType::Schedule {
        out.push(err("trigger.subject".into(), "only for schedule"));
    }
    match (&t.deleted_by, kind) {
        (Some(by), TriggerType::CustomerDeleted) if by != "customer" && by != "staff" => {
            out.push(err(
                "trigger.deletedBy".into(),
                "customer (the customer deleted the member) or staff (the member deleted the customer)",
            ))
        }
        (Some(_), k) if k != TriggerType::CustomerDeleted => {
            out.push(err("trigger.deletedBy".into(), "only for customer_deleted"))
        }
        _ => {}
    }
    if !t.stages.is_empty() && kind != TriggerType::StageChanged {
        out.push(err("trigger.stages".into(), "only for stage_changed"));
    }
    match (t.added_days_ago, kind) {
        (None, TriggerType::Condition) => {
            out.push(err("trigger.addedDaysAgo".into(), "is required"))
        }
        (Some(d), TriggerType::Condition) if !(1..=365).contains(&d) => {
            out.push(err("trigger.addedDaysAgo".into(), "1 to 365 days"))
        }
        (Some(_), k) if k != TriggerType::Condition => {
            out.push(err("trigger.addedDaysAgo".into(), "only for condition"))
        }
        _ => {}
    }
    match (&t.cron, kind) {
        (None, TriggerType::Schedule) => out.push(err("trigger.cron".into(), "is required")),
        (Some(c), TriggerType::Schedule) => {
            if let Err(e) = scrm_jobs::cron::next_after(c, "Asia/Shanghai", 0) {
                out.push(err(
                    "trigger.cron".into(),
                    format!("not a cron expression: {e}"),
                ));
            }
        }
        (Some(_), _) => out.push(err("trigger.cron".into(), "only for schedule")),
        (None, _) => {}
    }
    if d.steps.is_empty() {
        out.push(err("steps".into(), "at least one step"));
    }
    if d.steps.len() > MAX_STEPS {
        out.push(err("steps".into(), format!("at most {MAX_STEPS} steps")));
    }
    if let Some(last) = d.steps.last()
        && matches!(last.kind, StepType::Delay | StepType::Window)
    {
        out.push(err(
            format!("steps[{}].type", d.steps.len() - 1),
            "a workflow cannot end with a delay or window (it would wait for nothing)",
        ));
    }
    let keys: Vec<String> = d
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| key_of(s, i))
        .collect();
    for (i, s) in d.steps.iter().enumerate() {
        check_step(i, s, &keys, t.subject(), &mut out);
    }
    out
}

fn check_step(i: usize, s: &Step, keys: &[String], subject: Subject, out: &mut Vec<FieldError>) {
    let f = |name: &str| format!("steps[{i}].{name}");
    if let Some(k) = &s.key {
        if k.is_empty()
            || k.len() > 64
            || !k
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            out.push(err(f("key"), "1-64 letters, digits, _ or -"));
        } else if keys.iter().filter(|o| *o == k).count() > 1 {
            out.push(err(f("key"), format!("`{k}` is used by another step")));
        }
    }
    if s.name.as_deref().is_some_and(|n| n.chars().count() > 100) {
        out.push(err(f("name"), "at most 100 characters"));
    }
    if subject == Subject::Group && !s.kind.for_groups() {
        out.push(err(
            f("type"),
            format!(
                "{} acts on customers; this workflow runs per group chat",
                s.kind.as_str()
            ),
        ));
    }
    if subject == Subject::Customer && s.kind == StepType::GroupStats {
        out.push(err(
            f("type"),
            "group_stats needs a schedule with subject group",
        ));
    }
    use StepType::*;
    // Which fields each type takes.
    let allowed: &[&str] = match s.kind {
        Delay => &["duration", "maxDuration"],
        Condition => &["when", "otherwise"],
        Window => &["days", "start", "end"],
        SendMessage => &["text", "texts", "materialIds"],
        AddTag | RemoveTag => &["tagIds"],
        AssignOwner => &["staffId"],
        AssignPool => &["poolId"],
        SetStage => &["stage"],
        RemindStaff => &["text", "userids"],
        Webhook => &["url"],
        GroupStats => &[],
    };
    let present = [
        ("duration", s.duration.is_some()),
        ("maxDuration", s.max_duration.is_some()),
        ("when", !s.when.is_empty()),
        ("otherwise", s.otherwise.is_some()),
        ("days", !s.days.is_empty()),
        ("start", s.start.is_some()),
        ("end", s.end.is_some()),
        ("text", s.text.is_some()),
        ("texts", !s.texts.is_empty()),
        ("materialIds", !s.material_ids.is_empty()),
        ("tagIds", !s.tag_ids.is_empty()),
        ("staffId", s.staff_id.is_some()),
        ("stage", s.stage.is_some()),
        ("userids", !s.userids.is_empty()),
        ("url", s.url.is_some()),
        ("poolId", s.pool_id.is_some()),
    ];
    for (name, set) in present {
        if set && !allowed.contains(&name) {
            out.push(err(
                f(name),
                format!("not a field of a {} step", s.kind.as_str()),
            ));
        }
    }
    match s.kind {
        Delay => {
            let min = match s.duration.as_deref().map(|d| (d, duration_ms(d))) {
                None => {
                    out.push(err(f("duration"), "is required (e.g. 30s, 5m, 2h, 3d)"));
                    None
                }
                Some((d, None)) => {
                    out.push(err(
                        f("duration"),
                        format!("`{d}` is not a duration like 30s, 5m, 2h, 3d"),
                    ));
                    None
                }
                Some((_, Some(ms))) if ms > MAX_DELAY_MS => {
                    out.push(err(f("duration"), "at most 366d"));
                    None
                }
                Some((_, Some(ms))) => Some(ms),
            };
            if let Some(max) = &s.max_duration {
                match duration_ms(max) {
                    None => out.push(err(f("maxDuration"), format!("`{max}` is not a duration"))),
                    Some(m) if m > MAX_DELAY_MS => out.push(err(f("maxDuration"), "at most 366d")),
                    Some(m) if min.is_some_and(|min| m < min) => {
                        out.push(err(f("maxDuration"), "must not be shorter than duration"))
                    }
                    Some(_) => {}
                }
            }
        }
        Condition => {
            if s.when.is_empty() {
                out.push(err(f("when"), "at least one clause"));
            }
            for (j, c) in s.when.iter().enumerate() {
                check_clause(&format!("steps[{i}].when[{j}]"), c, out);
            }
            if let Otherwise::Goto(k) = otherwise(s) {
                match keys.iter().position(|o| *o == k) {
                    None => out.push(err(
                        f("otherwise"),
                        format!("`stop` or `goto:<key>`; no step has key `{k}`"),
                    )),
                    Some(p) if p <= i => out.push(err(
                        f("otherwise"),
                        format!("goto must jump forward; `{k}` is not after this step"),
                    )),
                    Some(_) => {}
                }
            }
        }
        Window => {
            for d in &s.days {
                if !(1..=7).contains(d) {
                    out.push(err(f("days"), "days are 1 (Monday) to 7 (Sunday)"));
                    break;
                }
            }
            let start = match s.start.as_deref() {
                None => {
                    out.push(err(f("start"), "is required (HH:MM)"));
                    None
                }
                Some(v) => {
                    let m = hhmm(v).filter(|m| *m < 24 * 60);
                    if m.is_none() {
                        out.push(err(f("start"), format!("`{v}` is not a time HH:MM")));
                    }
                    m
                }
            };
            let end = match s.end.as_deref() {
                None => {
                    out.push(err(f("end"), "is required (HH:MM)"));
                    None
                }
                Some(v) => {
                    let m = hhmm(v);
                    if m.is_none() {
                        out.push(err(f("end"), format!("`{v}` is not a time HH:MM")));
                    }
                    m
                }
            };
            if let (Some(a), Some(b)) = (start, end)
                && b <= a
            {
                out.push(err(f("end"), "must be after start"));
            }
        }
        SendMessage => {
            let has_text = s.text.as_deref().is_some_and(|t| !t.trim().is_empty());
            if !has_text && s.texts.is_empty() && s.material_ids.is_empty() {
                out.push(err(f("text"), "a text, texts or materialIds is required"));
            }
            if s.text.is_some() && !s.texts.is_empty() {
                out.push(err(f("texts"), "give text or texts, not both"));
            }
            for (j, t) in s.texts.iter().enumerate() {
                if t.trim().is_empty() {
                    out.push(err(format!("steps[{i}].texts[{j}]"), "is empty"));
                }
            }
            for (name, t) in s.text.iter().map(|t| ("text".to_string(), t)).chain(
                s.texts
                    .iter()
                    .enumerate()
                    .map(|(j, t)| (format!("texts[{j}]"), t)),
            ) {
                if t.len() > 4000 {
                    out.push(err(f(&name), "at most 4000 bytes"));
                }
            }
            if s.material_ids.len() > 9 {
                out.push(err(f("materialIds"), "at most 9 materials"));
            }
        }
        AddTag | RemoveTag => {
            if s.tag_ids.is_empty() {
                out.push(err(f("tagIds"), "at least one tag"));
            }
        }
        AssignOwner => {
            if s.staff_id.is_none() {
                out.push(err(f("staffId"), "is required"));
            }
        }
        AssignPool => {
            if s.pool_id.is_none() {
                out.push(err(f("poolId"), "is required"));
            }
        }
        SetStage => {
            if s.stage.as_deref().is_none_or(|v| v.trim().is_empty()) {
                out.push(err(f("stage"), "is required"));
            }
        }
        RemindStaff => {
            match s.text.as_deref() {
                Some(t) if !t.trim().is_empty() && t.len() <= 2048 => {}
                Some(t) if !t.trim().is_empty() => out.push(err(f("text"), "at most 2048 bytes")),
                _ => out.push(err(f("text"), "is required")),
            }
            if s.userids.len() > 1000 {
                out.push(err(f("userids"), "at most 1000"));
            }
        }
        Webhook => match s.url.as_deref() {
            None => out.push(err(f("url"), "is required")),
            Some(u) => match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {}
                _ => out.push(err(f("url"), format!("`{u}` is not an http(s) URL"))),
            },
        },
        GroupStats => {}
    }
}

fn check_clause(at: &str, c: &Clause, out: &mut Vec<FieldError>) {
    let kinds = [
        !c.has_tags.is_empty(),
        !c.lacks_tags.is_empty(),
        !c.stage_in.is_empty(),
        c.field.is_some(),
        c.no_interaction_days.is_some(),
    ]
    .iter()
    .filter(|k| **k)
    .count();
    if kinds != 1 {
        out.push(err(
            at.to_string(),
            "exactly one of hasTags, lacksTags, stageIn, field, noInteractionDays",
        ));
        return;
    }
    if (c.op.is_some() || c.value.is_some()) && c.field.is_none() {
        out.push(err(format!("{at}.field"), "op and value compare a field"));
    }
    if let Some(field) = &c.field {
        if !FIELDS.iter().any(|(n, _)| n == field) {
            let names: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
            out.push(err(
                format!("{at}.field"),
                format!("one of {}", names.join(", ")),
            ));
        }
        match c.op.as_deref() {
            None => out.push(err(format!("{at}.op"), "is required")),
            Some(op) if !OPS.contains(&op) => out.push(err(
                format!("{at}.op"),
                format!("one of {}", OPS.join(", ")),
            )),
            Some("empty" | "not_empty") => {}
            Some(_) => match &c.value {
                None | Some(Value::Null) => {
                    out.push(err(format!("{at}.value"), "is required for this op"))
                }
                Some(Value::String(_) | Value::Number(_) | Value::Bool(_)) => {}
                Some(_) => out.push(err(format!("{at}.value"), "a string, number or boolean")),
            },
        }
    }
    if let Some(d) = c.no_interaction_days
        && !(1..=365).contains(&d)
    {
        out.push(err(format!("{at}.noInteractionDays"), "1 to 365"));
    }
}

/// Whether a customer's field value passes `op value`.
pub fn compare(actual: &Value, op: &str, want: Option<&Value>) -> bool {
    let empty = match actual {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    match op {
        "empty" => return empty,
        "not_empty" => return !empty,
        _ => {}
    }
    let Some(want) = want else { return false };
    let as_f = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(*b as i64 as f64),
        _ => None,
    };
    let as_s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match op {
        "eq" => match (as_f(actual), as_f(want)) {
            (Some(a), Some(b)) => a == b,
            _ => as_s(actual) == as_s(want),
        },
        "ne" => match (as_f(actual), as_f(want)) {
            (Some(a), Some(b)) => a != b,
            _ => as_s(actual) != as_s(want),
        },
        "contains" => as_s(actual).contains(&as_s(want)),
        _ => {
            let (Some(a), Some(b)) = (as_f(actual), as_f(want)) else {
                return false;
            };
            match op {
                "gt" => a > b,
                "gte" => a >= b,
                "lt" => a < b,
                "lte" => a <= b,
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("90s"), Some(90_000));
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("3d"), Some(3 * 86_400_000));
        assert_eq!(duration_ms("3"), None);
        assert_eq!(duration_ms("3w"), None);
        assert_eq!(duration_ms(""), None);
    }

    #[test]
    fn windows_wait_for_the_next_opening() {
        let tz = crate::automation::shanghai();
        let step = Step {
            days: vec![1, 2, 3, 4, 5],
            start: Some("10:00".into()),
            end: Some("12:00".into()),
            ..serde_json::from_value(json!({"type": "window"})).unwrap()
        };
        // Saturday 2026-11-21 11:00 → Monday 2026-11-23 10:00.
        let sat = tz
            .with_ymd_and_hms(2026, 11, 21, 11, 0, 0)
            .unwrap()
            .timestamp_millis();
        let mon = tz
            .with_ymd_and_hms(2026, 11, 23, 10, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(window_opens_at(&step, sat), mon);
        // Inside: now.
        let inside = tz
            .with_ymd_and_hms(2026, 11, 23, 11, 59, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(window_opens_at(&step, inside), inside);
        // Monday after the window → Tuesday 10:00.
        let after = tz
            .with_ymd_and_hms(2026, 11, 23, 12, 0, 0)
            .unwrap()
            .timestamp_millis();
        let tue = tz
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(window_opens_at(&step, after), tue);
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse(json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": 5}]})).unwrap_err();
        assert_eq!(e.field, "steps[0].duration");
        let d = parse(json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "delay", "duration": "5m"}]})).unwrap();
        assert_eq!(check(&d)[0].field, "steps[0].type", "a trailing delay");
        let e = parse(json!({"name": "x", "steps": []})).unwrap_err();
        assert_eq!(e.field, "trigger");
        let e =
            parse(json!({"name": "x", "trigger": {"type": "manual"}, "steps": [{"type": "fly"}]}))
                .unwrap_err();
        assert_eq!(e.field, "steps[0].type");
        let e =
            parse(json!({"name": "x", "trigger": {"type": "manual", "colour": 1}, "steps": []}))
                .unwrap_err();
        assert_eq!(e.field, "trigger.colour");
    }

    #[test]
    fn comparisons() {
        assert!(compare(&json!(1), "eq", Some(&json!("1"))));
        assert!(compare(&json!("vip"), "contains", Some(&json!("v"))));
        assert!(compare(&Value::Null, "empty", None));
        assert!(compare(&json!(5), "gt", Some(&json!(3))));
        assert!(!compare(&json!("a"), "gt", Some(&json!(3))));
    }
}
