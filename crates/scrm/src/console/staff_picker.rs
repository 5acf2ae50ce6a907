//! The staff picker: a search box over the tenant's staff with the chosen members kept on top,
//! used wherever a form picks staff (the customer list's filter, the welcome message's members,
//! the SOP assign step; the channel-code form searches with it too). A page never loads the
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
        })
    }
}

/// One row of a picker.
pub struct Choice {
    pub value: String,
    pub name: String,
    pub userid: String,
    pub chosen: bool,
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
        let chosen: Vec<String> = chosen
            .iter()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .fold(Vec::new(), |mut out, v| {
                if !out.contains(&v) && out.len() < CHOSEN_MAX {
                    out.push(v);
                }
                out
            });
        let known = staff_with(state, c.user.tenant_id, spec.by, &chosen).await?;
        let mut rows: Vec<Choice> = chosen
            .iter()
            .map(|v| match known.iter().find(|s| &spec.by.value(s) == v) {
                Some(s) => Choice {
                    value: v.clone(),
                    name: s.name.clone(),
                    userid: s.userid.clone(),
                    chosen: true,
                },
                // Shown as given, so the API's refusal of it can be read next to it.
                None => Choice {
                    value: v.clone(),
                    name: v.clone(),
                    userid: String::new(),
                    chosen: true,
                },
            })
            .collect();
        let searchable = c.can(perm::STAFF_VIEW);
        let searched = !keyword.trim().is_empty();
        let mut no_match = false;
        if searchable && (spec.suggest || searched) {
            let found: Vec<Choice> = search(state, c, keyword)
                .await?
                .iter()
                .map(|s| Choice {
                    value: spec.by.value(s),
                    name: s.name.clone(),
                    userid: s.userid.clone(),
                    chosen: false,
                })
                .filter(|f| !chosen.contains(&f.value))
                .collect();
            no_match = searched && found.is_empty();
            rows.extend(found);
        }
        Ok(StaffPicker {
            spec,
            rows,
            searchable,
            no_match,
            l: c.l,
        })
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
        format!("/console/staff-picker?{}", q.finish())
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

/// `GET /console/staff-picker?field&dom&by&multiple&none&keyword&<field>=chosen…`: a picker's
/// rows for a search: the chosen ones (sent back by the search box) first, then up to
/// [`PICK_SIZE`] matches (htmx swaps them into the picker).
pub async fn search_rows(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let spec = Spec::from_query(raw.as_deref())?;
    let chosen: Vec<String> = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == spec.field.as_str())
        .map(|(_, v)| v.into_owned())
        .collect();
    let keyword = query_param(raw.as_deref(), "keyword").unwrap_or_default();
    let p = StaffPicker::build(&state, &c, spec, &chosen, &keyword).await?;
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
    }
}
