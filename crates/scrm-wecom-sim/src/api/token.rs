//! `/cgi-bin/gettoken` and the access_token checks every other API makes (API-FACTS §2).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::any;
use serde::Serialize;

use super::{Api, ApiRequest, err, gate, ok};
use crate::state::{SecretKind, Sim, TokenInfo};

pub(crate) fn routes() -> Router<Sim> {
    Router::new().route(Api::GetToken.path(), any(gettoken))
}

#[derive(Serialize)]
struct TokenReply {
    access_token: String,
    expires_in: i64,
}

/// Returns the current token of the secret while it is valid (the older documented behaviour,
/// API-FACTS §14.5; clients must not rely on it), else issues a new one.
async fn gettoken(State(sim): State<Sim>, req: ApiRequest) -> Response {
    let api = Api::GetToken;
    let _gate = gate!(sim, api, req);
    let Some(corpid) = req.param("corpid") else {
        return err(api, 41002);
    };
    let Some(secret) = req.param("corpsecret") else {
        return err(api, 41004);
    };
    let (kind, lifetime) = {
        let c = sim.0.config.read();
        if corpid != c.creds.corp_id {
            return err(api, 40013);
        }
        let kind = if secret == c.creds.app_secret {
            SecretKind::App
        } else if secret == c.creds.contact_secret {
            SecretKind::Contact
        } else {
            return err(api, 40001);
        };
        (kind, c.creds.token_lifetime_secs as i64)
    };
    let now = sim.now_ms();
    let mut t = sim.0.tokens.lock();
    if t.revoked.get(&kind).copied().unwrap_or(false) {
        return err(api, 40001);
    }
    let generation = t.generation.get(&kind).copied().unwrap_or(0);
    if let Some(cur) = t.current.get(&kind)
        && let Some(info) = t.by_token.get(cur)
        && info.expires_ms > now
        && info.generation == generation
    {
        return ok(TokenReply {
            access_token: cur.clone(),
            expires_in: (info.expires_ms - now) / 1000,
        });
    }
    // Drop tokens that expired more than a day ago so the map stays small.
    t.by_token.retain(|_, i| i.expires_ms > now - 86_400_000);
    let token = sim.new_id("sim-").repeat(3);
    t.by_token.insert(
        token.clone(),
        TokenInfo {
            kind,
            expires_ms: now + lifetime * 1000,
            generation,
        },
    );
    t.current.insert(kind, token.clone());
    ok(TokenReply {
        access_token: token,
        expires_in: lifetime,
    })
}

/// Validates an access_token: 41001 missing, 40014 unknown or killed by a secret reset,
/// 42001 expired, or the errcode forced on its secret.
pub(crate) fn check(sim: &Sim, api: Api, token: &str) -> Result<SecretKind, Response> {
    if token.is_empty() {
        return Err(err(api, 41001));
    }
    let now = sim.now_ms();
    let t = sim.0.tokens.lock();
    let Some(info) = t.by_token.get(token) else {
        return Err(err(api, 40014));
    };
    if info.generation != t.generation.get(&info.kind).copied().unwrap_or(0) {
        return Err(err(api, 40014));
    }
    if info.expires_ms <= now {
        return Err(err(api, 42001));
    }
    if let Some(&code) = t.forced_errcode.get(&info.kind) {
        return Err(err(api, code));
    }
    Ok(info.kind)
}
