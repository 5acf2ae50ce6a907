//! The staff picker: a search box over the tenant's staff with the chosen members kept on top,
//! used wherever a form picks staff (the customer list's filter, the welcome message's members,
//! the SOP assign step, the channel-code members with their daily limits and backups, the
//! traffic-pool member rows). A page never loads the
//! company's staff: it shows the chosen ones and at most [`PICK_SIZE`] suggestions, and every
//! further member is a search away (`GET /console/staff-picker`, name or userid, server-side).
//!
//! The picker posts plain form fields (a checkbox or radio per row, named as the form wants
//! them), so the forms using it are unchanged and work without scripts on the first page; htmx
//! only swaps the rows when someone types in the search box.

use askama::Template;
use axum::extract::{RawQuery, State};
use serde_json::json;

use super::{Chrome, Lang, PageResult, arg, query_param, value};
use crate::auth::permissions as perm;
use crate::customers::staff::{self, StaffRow};
use crate::http::ApiError;
use crate::http::extract::ApiQuery;
use crate::state::AppState;

/// How many staff a search (or a form's suggestions) shows at a time.
pub const PICK_SIZE: i64 = 20;

/// How many chosen members a picker shows at most (a welcome message may name many).
const CHOSEN_MAX: usize = 500;

/// What a choice's value is: the staff row's id or its WeCom userid.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum By {
    Id,
    Userid,
}

impl By {
    fn key(self) -> &'static str {
        match self {
            By::Id => "id",
            By::Userid => "userid",
        }
    }

    fn of(s: &str) -> By {
        if s == "userid" { By::Userid } else { By::Id }
    }

    fn value(self, s: &StaffRow) -> String {
        match self {
            By::Id => s.id.to_string(),
            By::Userid => s.userid.clone(),
        }
    }
}

/// The first choice of a single picker: nobody.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum NoneChoice {
    /// A filter's "all staff".
    All,
    /// A form's "nobody".
    Dash,
}

impl NoneChoice {
    fn key(self) -> &'static str {
        match self {
            NoneChoice::All => "all",
            NoneChoice::Dash => "dash",
        }
    }

    fn of(s: &str) -> Option<NoneChoice> {
        match s {
            "all" => Some(NoneChoice::All),
            "dash" => Some(NoneChoice::Dash),
            _ => None,
        }
    }
}

/// Columns a row shows beside its choice.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Columns {
    /// The choice alone.
    #[default]
    None,
    /// A channel code's: the member's daily add limit (posted as `limit.<value>`, 0 for none)
    /// and whether it is a backup member (posted as `backup=<value>`). A backup who is not a
    /// member is shown (and kept) like a chosen row.
    LimitBackup,
}

impl Columns {
    fn key(self) -> &'static str {
        match self {
            Columns::None => "",
            Columns::LimitBackup => "limit-backup",
        }
    }

    fn of(s: &str) -> Columns {
        if s == "limit-backup" {
            Columns::LimitBackup
        } else {
            Columns::None
        }
    }
}

/// What a form has chosen: the values, and for [`Columns::LimitBackup`] the limits and backups.
#[derive(Clone, Debug, Default)]
pub struct Picks {
    pub values: Vec<String>,
    /// A value's daily limit (a value not listed has 0).
    pub limits: Vec<(String, i64)>,
    pub backup: Vec<String>,
}

impl Picks {
    /// Just these values (a picker without columns).
    pub fn of(values: &[String]) -> Picks {
        Picks {
            values: values.to_vec(),
            ..Picks::default()
        }
    }

    /// A posted form's (or the search box's query's) choices for this picker.
    pub fn from_pairs<'a>(
        spec: &Spec,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Picks {
        let mut p = Picks::default();
        for (k, v) in pairs {
            if k == spec.field {
                p.values.push(v.to_string());
            } else if spec.columns == Columns::LimitBackup {
                if k == "backup" {
                    p.backup.push(v.to_string());
                } else if let Some(of) = k.strip_prefix("limit.") {
                    p.limits
                        .push((of.to_string(), v.trim().parse().unwrap_or(0)));
                }
            }
        }
        p
    }

    pub fn limit_of(&self, value: &str) -> i64 {
        self.limits
            .iter()
            .find(|(v, _)| v == value)
            .map_or(0, |(_, l)| *l)
    }
}

/// Where a picker sits on its form; the search route gets it back in its query.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The form field the choices are posted as (`staff`, `staffUserids`, `step.0.staffId`).
    pub field: String,
    /// The element id prefix, unique on the page (`staff-filter`, `step-0-staff`).
    pub dom: String,
    pub by: By,
    /// Checkboxes (many) or radios (one).
    pub multiple: bool,
    /// A single picker's first choice, if it has one.
    pub none: Option<NoneChoice>,
    /// Whether the first page shows suggestions before anyone searches (a filter bar does not).
    pub suggest: bool,
    /// What each row shows beside its choice.
    pub columns: Columns,
}

impl Spec {
    /// Field and element names go into HTML attributes and CSS selectors: a short, plain name.
    fn plain(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    }

    fn from_query(raw: Option<&str>) -> Result<Spec, ApiError> {
        let field = query_param(raw, "field").unwrap_or_default();
        let dom = query_param(raw, "dom").unwrap_or_default();
        if !Spec::plain(&field) || !Spec::plain(&dom) {
            return Err(ApiError::invalid(
                "field and dom are plain names (letters, digits, . _ -)",
            ));
        }
        Ok(Spec {
            field,
            dom,
            by: By::of(&query_param(raw, "by").unwrap_or_default()),
            multiple: query_param(raw, "multiple").as_deref() == Some("1"),
            none: query_param(raw, "none").as_deref().and_then(NoneChoice::of),
            suggest: false,
            columns: Columns::of(&query_param(raw, "columns").unwrap_or_default()),
        })
    }
}

/// One row of a picker.
pub struct Choice {
    pub value: String,
    pub name: String,
    pub userid: String,
    pub chosen: bool,
    /// [`Columns::LimitBackup`]: the daily limit and whether a backup.
    pub limit: i64,
    pub backup: bool,
}

/// A picker ready to render: the chosen members, then what the search found.
#[derive(Template)]
#[template(path = "console/staff_picker.html")]
pub struct StaffPicker {
    pub spec: Spec,
    pub rows: Vec<Choice>,
    /// Whether the user may search staff (without `customer:staff:view` only the chosen show).
    pub searchable: bool,
    /// Whether a search ran and found nobody new.
    pub no_match: bool,
    pub l: Lang,
}

/// Only the rows (the search route's answer, swapped into the picker's table).
#[derive(Template)]
#[template(path = "console/staff_picker_rows.html")]
pub struct PickerRows<'a> {
    pub p: &'a StaffPicker,
}

impl StaffPicker {
    /// A picker for a form with these values chosen; `keyword` filters the suggestions.
    pub async fn build(
        state: &AppState,
        c: &Chrome,
        spec: Spec,
        chosen: &[String],
        keyword: &str,
    ) -> Result<StaffPicker, ApiError> {
        StaffPicker::build_picks(state, c, spec, &Picks::of(chosen), keyword).await
    }

    /// A picker with its choices (and their columns); `keyword` filters the suggestions.
    pub async fn build_picks(
        state: &AppState,
        c: &Chrome,
        spec: Spec,
        picks: &Picks,
        keyword: &str,
    ) -> Result<StaffPicker, ApiError> {
        let shown = shown(picks);
        let known = staff_with(state, c.user.tenant_id, spec.by, &shown).await?;
        let mut p = StaffPicker::with_known(c, spec, picks, &known);
        let searched = !keyword.trim().is_empty();
        if p.searchable && (p.spec.suggest || searched) {
            let found: Vec<Choice> = search(state, c, keyword)
                .await?
                .iter()
                .map(|s| Choice {
                    value: p.spec.by.value(s),
                    name: s.name.clone(),
                    userid: s.userid.clone(),
                    chosen: false,
                    limit: 0,
                    backup: false,
                })
                .filter(|f| !shown.contains(&f.value))
                .collect();
            p.no_match = searched && found.is_empty();
            p.rows.extend(found);
        }
        Ok(p)
    }

    /// A picker showing only its choices, named from `known` (the staff its values stand for,
    /// looked up once for many pickers by [`staff_with`]); suggestions come with a search.
    pub fn with_known(c: &Chrome, spec: Spec, picks: &Picks, known: &[StaffRow]) -> StaffPicker {
        let rows: Vec<Choice> = shown(picks)
            .into_iter()
            .map(|v| {
                let (name, userid) = match known.iter().find(|s| spec.by.value(s) == v) {
                    Some(s) => (s.name.clone(), s.userid.clone()),
                    // Shown as given, so the API's refusal of it can be read next to it.
                    None => (v.clone(), String::new()),
                };
                Choice {
                    chosen: picks.values.contains(&v),
                    limit: picks.limit_of(&v),
                    backup: picks.backup.contains(&v),
                    value: v,
                    name,
                    userid,
                }
            })
            .collect();
        StaffPicker {
            spec,
            rows,
            searchable: c.can(perm::STAFF_VIEW),
            no_match: false,
            l: c.l,
        }
    }

    /// The picker as HTML, for a page to place with `|safe` (askama escapes everything in it).
    pub fn html(&self) -> Result<String, askama::Error> {
        self.render()
    }

    /// Where the search box asks for rows.
    pub fn search_url(&self) -> String {
        let s = &self.spec;
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("field", &s.field)
            .append_pair("dom", &s.dom)
            .append_pair("by", s.by.key());
        if s.multiple {
            q.append_pair("multiple", "1");
        }
        if let Some(n) = s.none {
            q.append_pair("none", n.key());
        }
        if s.columns != Columns::None {
            q.append_pair("columns", s.columns.key());
        }
        format!("/console/staff-picker?{}", q.finish())
    }

    /// What the search box sends back: the checked choices, and the columns' own inputs.
    pub fn include(&self) -> String {
        let d = &self.spec.dom;
        match self.spec.columns {
            Columns::None => format!("#{d}-rows input:checked"),
            Columns::LimitBackup => {
                format!("#{d}-rows input:checked, #{d}-rows input[type=number]")
            }
        }
    }

    pub fn limit_backup(&self) -> bool {
        self.spec.columns == Columns::LimitBackup
    }

    pub fn input_type(&self) -> &'static str {
        if self.spec.multiple {
            "checkbox"
        } else {
            "radio"
        }
    }

    /// The label of the "nobody" choice, if this picker has one.
    pub fn none_label(&self) -> Option<&'static str> {
        self.spec.none.map(|n| match n {
            NoneChoice::All => self.l.t("全部", "All"),
            NoneChoice::Dash => "—",
        })
    }

    /// Whether nobody is chosen (the "nobody" choice is then checked).
    pub fn nothing_chosen(&self) -> bool {
        !self.rows.iter().any(|r| r.chosen)
    }
}

/// The values a picker shows as chosen rows: its choices, then backups that are not choices
/// (each once, at most [`CHOSEN_MAX`]).
fn shown(picks: &Picks) -> Vec<String> {
    picks
        .values
        .iter()
        .chain(picks.backup.iter())
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .fold(Vec::new(), |mut out, v| {
            if !out.contains(&v) && out.len() < CHOSEN_MAX {
                out.push(v);
            }
            out
        })
}

/// Up to [`PICK_SIZE`] of the tenant's staff matching `keyword` (name or userid), through the
/// staff API (its paging, its tenant scope); nobody for a role that may not see staff.
pub async fn search(
    state: &AppState,
    c: &Chrome,
    keyword: &str,
) -> Result<Vec<StaffRow>, ApiError> {
    if !c.can(perm::STAFF_VIEW) {
        return Ok(Vec::new());
    }
    Ok(value(
        staff::list_staff(
            State(state.clone()),
            c.user.clone(),
            ApiQuery(arg(json!({"keyword": keyword, "size": PICK_SIZE}))?),
        )
        .await,
    )?
    .list)
}

/// The tenant's staff whose id or userid (as `by` says) is one of `values`.
pub async fn staff_with(
    state: &AppState,
    tenant_id: i64,
    by: By,
    values: &[String],
) -> Result<Vec<StaffRow>, ApiError> {
    let mut out: Vec<StaffRow> = Vec::new();
    match by {
        By::Userid => {
            for chunk in values.chunks(CHOSEN_MAX) {
                let mut q = scrm_db::query(
                    "SELECT id, userid, name, department_ids, status FROM staff WHERE tenant_id = ? AND userid IN ",
                )
                .bind(tenant_id);
                q.push_in_list(chunk.iter().cloned());
                out.extend(state.db.fetch_all::<StaffRow>(q).await?);
            }
        }
        By::Id => {
            let ids: Vec<i64> = values.iter().filter_map(|v| v.parse().ok()).collect();
            for chunk in ids.chunks(CHOSEN_MAX) {
                let mut q = scrm_db::query(
                    "SELECT id, userid, name, department_ids, status FROM staff WHERE tenant_id = ? AND id IN ",
                )
                .bind(tenant_id);
                q.push_in_list(chunk.iter().copied());
                out.extend(state.db.fetch_all::<StaffRow>(q).await?);
            }
        }
    }
    Ok(out)
}

/// `GET /console/staff-picker?field&dom&by&multiple&none&columns&keyword&<field>=chosen…`: a picker's
/// rows for a search: the chosen ones (sent back by the search box) first, then up to
/// [`PICK_SIZE`] matches (htmx swaps them into the picker).
pub async fn search_rows(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let spec = Spec::from_query(raw.as_deref())?;
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let picks = Picks::from_pairs(&spec, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let keyword = query_param(raw.as_deref(), "keyword").unwrap_or_default();
    let p = StaffPicker::build_picks(&state, &c, spec, &picks, &keyword).await?;
    super::page(&PickerRows { p: &p })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_and_element_names_must_be_plain() {
        assert!(Spec::plain("step.3.staffId"));
        assert!(Spec::plain("staff-filter"));
        assert!(!Spec::plain(""));
        assert!(!Spec::plain("a\"><script>"));
        assert!(!Spec::plain("a b"));
        assert!(Spec::from_query(Some("field=x&dom=y%22")).is_err());
        let s = Spec::from_query(Some("field=staff&dom=f&by=userid&multiple=1&none=all")).unwrap();
        assert_eq!(s.by, By::Userid);
        assert!(s.multiple);
        assert_eq!(s.none, Some(NoneChoice::All));
        assert_eq!(s.columns, Columns::None);
        let s = Spec::from_query(Some("field=staff&dom=f&columns=limit-backup")).unwrap();
        assert_eq!(s.columns, Columns::LimitBackup);
    }

    #[test]
    fn a_backup_who_is_not_a_member_is_shown_once() {
        let spec = Spec::from_query(Some("field=staff&dom=f&columns=limit-backup")).unwrap();
        let p = Picks::from_pairs(
            &spec,
            [
                ("staff", "u1"),
                ("limit.u1", "7"),
                ("limit.u2", "x"),
                ("backup", "u1"),
                ("backup", "u2"),
                ("other", "u3"),
            ],
        );
        assert_eq!(p.values, ["u1"]);
        assert_eq!(p.limit_of("u1"), 7);
        assert_eq!(p.limit_of("u2"), 0);
        assert_eq!(shown(&p), ["u1", "u2"]);
    }
}
