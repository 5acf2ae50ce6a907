//! Customer transfer (在职继承 / 离职继承, API-FACTS §9).

use serde::{Deserialize, Serialize};

use super::wire::collect_pages;
use super::{Api, AppClient, WeComError};

const TRANSFER_CUSTOMER: Api = Api::post_write(
    "externalcontact/transfer_customer",
    "/cgi-bin/externalcontact/transfer_customer",
);
const TRANSFER_RESULT: Api = Api::post_read(
    "externalcontact/transfer_result",
    "/cgi-bin/externalcontact/transfer_result",
);
const RESIGNED_TRANSFER_CUSTOMER: Api = Api::post_write(
    "externalcontact/resigned/transfer_customer",
    "/cgi-bin/externalcontact/resigned/transfer_customer",
);
const RESIGNED_TRANSFER_RESULT: Api = Api::post_read(
    "externalcontact/resigned/transfer_result",
    "/cgi-bin/externalcontact/resigned/transfer_result",
);
const GET_UNASSIGNED_LIST: Api = Api::post_read(
    "externalcontact/get_unassigned_list",
    "/cgi-bin/externalcontact/get_unassigned_list",
);

/// `transfer_customer` / `resigned/transfer_customer` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferCustomerRequest {
    /// The member handing over.
    pub handover_userid: String,
    /// The member taking over.
    pub takeover_userid: String,
    /// At most 100 customers.
    pub external_userid: Vec<String>,
    /// Message to the customers (在职 only, ≤200 chars; WeCom's default text if empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_success_msg: Option<String>,
}

/// Per-customer outcome: errcode 0 means the transfer *started* (takeover after 24 h).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferCustomerResult {
    /// The customer.
    pub external_userid: String,
    /// 0, or e.g. 40129 already transferring, 40130 same member.
    pub errcode: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TransferCustomerResponse {
    customer: Vec<TransferCustomerResult>,
}

#[derive(Debug, Serialize)]
struct TransferResultRequest<'a> {
    handover_userid: &'a str,
    takeover_userid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    cursor: &'a str,
}

/// One customer's takeover status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferStatus {
    /// The customer.
    pub external_userid: String,
    /// 1 taken over, 2 waiting, 3 customer refused, 4 takeover member at limit, 5 no record.
    pub status: i64,
    /// When taken over, or the future automatic takeover time while waiting.
    pub takeover_time: i64,
}

/// `transfer_result` / `resigned/transfer_result` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferResultResponse {
    /// This page (≤1000).
    pub customer: Vec<TransferStatus>,
    /// Empty at the end.
    pub next_cursor: String,
}

#[derive(Debug, Serialize)]
struct UnassignedRequest<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    cursor: &'a str,
    page_size: u32,
}

/// A customer of a member who left, not yet assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnassignedCustomer {
    /// The member who left.
    pub handover_userid: String,
    /// The customer.
    pub external_userid: String,
    /// When the member left (unix seconds).
    pub dimission_time: i64,
}

/// `get_unassigned_list` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnassignedListResponse {
    /// This page.
    pub info: Vec<UnassignedCustomer>,
    /// True on the last page.
    pub is_last: bool,
    /// Cursor for the next page.
    pub next_cursor: String,
}

impl AppClient {
    /// `transfer_customer` (在职): hand customers of an active member to another.
    pub async fn transfer_customer(
        &self,
        request: &TransferCustomerRequest,
    ) -> Result<Vec<TransferCustomerResult>, WeComError> {
        check_batch(request)?;
        let r: TransferCustomerResponse = self.post(&TRANSFER_CUSTOMER, request).await?;
        Ok(r.customer)
    }

    /// `resigned/transfer_customer` (离职); `transfer_success_msg` is not sent.
    pub async fn resigned_transfer_customer(
        &self,
        request: &TransferCustomerRequest,
    ) -> Result<Vec<TransferCustomerResult>, WeComError> {
        check_batch(request)?;
        let request = TransferCustomerRequest {
            transfer_success_msg: None,
            ..request.clone()
        };
        let r: TransferCustomerResponse = self.post(&RESIGNED_TRANSFER_CUSTOMER, &request).await?;
        Ok(r.customer)
    }

    /// `transfer_result` (在职): one page.
    pub async fn transfer_result(
        &self,
        handover: &str,
        takeover: &str,
        cursor: &str,
    ) -> Result<TransferResultResponse, WeComError> {
        let body = TransferResultRequest {
            handover_userid: handover,
            takeover_userid: takeover,
            cursor,
        };
        self.post(&TRANSFER_RESULT, &body).await
    }

    /// `resigned/transfer_result` (离职): one page.
    pub async fn resigned_transfer_result(
        &self,
        handover: &str,
        takeover: &str,
        cursor: &str,
    ) -> Result<TransferResultResponse, WeComError> {
        let body = TransferResultRequest {
            handover_userid: handover,
            takeover_userid: takeover,
            cursor,
        };
        self.post(&RESIGNED_TRANSFER_RESULT, &body).await
    }

    /// Every status row of an in-service transfer.
    pub async fn transfer_result_all(
        &self,
        handover: &str,
        takeover: &str,
    ) -> Result<Vec<TransferStatus>, WeComError> {
        collect_pages(TRANSFER_RESULT.name, |cursor| async move {
            let page = self.transfer_result(handover, takeover, &cursor).await?;
            Ok((page.customer, page.next_cursor))
        })
        .await
    }

    /// Every status row of a resigned transfer.
    pub async fn resigned_transfer_result_all(
        &self,
        handover: &str,
        takeover: &str,
    ) -> Result<Vec<TransferStatus>, WeComError> {
        collect_pages(RESIGNED_TRANSFER_RESULT.name, |cursor| async move {
            let page = self
                .resigned_transfer_result(handover, takeover, &cursor)
                .await?;
            Ok((page.customer, page.next_cursor))
        })
        .await
    }

    /// `get_unassigned_list`: one page (page_size ≤ 1000).
    pub async fn get_unassigned_list(
        &self,
        cursor: &str,
        page_size: u32,
    ) -> Result<UnassignedListResponse, WeComError> {
        let body = UnassignedRequest {
            cursor,
            page_size: page_size.clamp(1, 1000),
        };
        self.post(&GET_UNASSIGNED_LIST, &body).await
    }

    /// Every unassigned customer, until `is_last` (or an empty cursor).
    pub async fn get_unassigned_list_all(&self) -> Result<Vec<UnassignedCustomer>, WeComError> {
        collect_pages(GET_UNASSIGNED_LIST.name, |cursor| async move {
            let page = self.get_unassigned_list(&cursor, 1000).await?;
            let next = if page.is_last {
                String::new()
            } else {
                page.next_cursor
            };
            Ok((page.info, next))
        })
        .await
    }
}

fn check_batch(request: &TransferCustomerRequest) -> Result<(), WeComError> {
    if request.external_userid.is_empty() || request.external_userid.len() > 100 {
        return Err(WeComError::InvalidRequest(format!(
            "transfer takes 1..=100 customers, got {}",
            request.external_userid.len()
        )));
    }
    Ok(())
}
