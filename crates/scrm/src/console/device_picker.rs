//! Device-account search for the forms that pick one personal WeChat account (a traffic pool's
//! member rows): the account is typed (wxid) with suggestions from this search, at most
//! [`PICK_SIZE`] a search — never the company's whole account list.

use askama::Template;
use axum::extract::{RawQuery, State};

use super::{Chrome, PageResult};
use crate::devices::gateway;
use crate::state::AppState;

/// Suggestions one search returns.
pub const PICK_SIZE: i64 = 20;

#[derive(Template)]
#[template(path = "console/device_account_options.html")]
struct Options {
    accounts: Vec<(String, String)>,
}

/// The search text of a request: `keyword`, or the value of the input that asked (htmx sends
/// the typed input under its own name, e.g. `member.0.accountId`).
fn keyword_of(raw: Option<&str>) -> String {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    pairs
        .iter()
        .find(|(k, _)| k == "keyword")
        .or_else(|| pairs.iter().find(|(k, _)| k.ends_with("accountId")))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// `GET /console/device-accounts?keyword=` (or `…?member.<i>.accountId=`): the `<option>`s of
/// the device accounts whose wxid or nickname contains the text, for an input's `<datalist>`.
pub async fn search(
    State(state): State<AppState>,
    c: Chrome,
    RawQuery(raw): RawQuery,
) -> PageResult {
    let keyword = keyword_of(raw.as_deref());
    let accounts =
        gateway::search_device_accounts(&state.db, c.user.tenant_id, &keyword, PICK_SIZE).await?;
    super::page(&Options { accounts })
}

/// The first suggestions a form shows before anything is typed.
pub async fn first(
    state: &AppState,
    c: &Chrome,
) -> Result<Vec<(String, String)>, super::PageError> {
    if !c.can(crate::auth::permissions::DEVICE_VIEW) {
        return Ok(Vec::new());
    }
    Ok(gateway::search_device_accounts(&state.db, c.user.tenant_id, "", PICK_SIZE).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_text_is_the_keyword_or_the_asking_input() {
        assert_eq!(keyword_of(Some("keyword=%20wx1%20")), "wx1");
        assert_eq!(keyword_of(Some("member.3.accountId=%E5%B0%8F")), "小");
        assert_eq!(keyword_of(None), "");
    }
}
