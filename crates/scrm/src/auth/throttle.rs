//! Login throttling: after `SCRM_LOGIN_MAX_FAILURES` failed logins for one user name within
//! `SCRM_LOGIN_WINDOW_SECS`, that name is locked for a window. Kept in the database so every scrm
//! process behind a load balancer sees the same count.

use scrm_db::{Backend, Db, query};

/// Seconds until the key may try again, if it is locked now.
pub async fn locked_for(db: &Db, key: &str, now: i64) -> scrm_db::DbResult<Option<i64>> {
    let until = db
        .fetch_optional::<(i64,)>(
            query("SELECT locked_until FROM login_throttle WHERE throttle_key = ?").bind(key),
        )
        .await?;
    Ok(until
        .map(|(u,)| u)
        .filter(|u| *u > now)
        .map(|u| (u - now + 999) / 1000))
}

/// Count a failure; lock the key when the window holds too many.
pub async fn record_failure(
    db: &Db,
    key: &str,
    now: i64,
    max_failures: u32,
    window_ms: i64,
) -> scrm_db::DbResult<()> {
    let mut tx = db.begin().await?;
    let row = tx
        .fetch_optional::<(i64, i64)>(
            query(match db.backend() {
                Backend::Sqlite => "SELECT failures, window_start FROM login_throttle WHERE throttle_key = ?",
                _ => "SELECT failures, window_start FROM login_throttle WHERE throttle_key = ? FOR UPDATE",
            })
            .bind(key),
        )
        .await?;
    match row {
        None => {
            let inserted = tx
                .execute(
                    query("INSERT INTO login_throttle (throttle_key, failures, window_start, locked_until) VALUES (?, 1, ?, 0)")
                        .bind(key)
                        .bind(now),
                )
                .await;
            match inserted {
                // Another failure of the same name inserted first; one lost count is harmless.
                Err(e) if e.is_conflict() => return Ok(()),
                other => other?,
            };
        }
        Some((failures, start)) => {
            let (failures, start) = if now - start > window_ms {
                (1, now)
            } else {
                (failures + 1, start)
            };
            let locked_until = if failures >= i64::from(max_failures) {
                now + window_ms
            } else {
                0
            };
            tx.execute(
                query("UPDATE login_throttle SET failures = ?, window_start = ?, locked_until = ? WHERE throttle_key = ?")
                    .bind(failures)
                    .bind(start)
                    .bind(locked_until)
                    .bind(key),
            )
            .await?;
        }
    }
    tx.commit().await
}

/// Forget the failures of a key after a successful login.
pub async fn clear(db: &Db, key: &str) -> scrm_db::DbResult<()> {
    db.execute(query("DELETE FROM login_throttle WHERE throttle_key = ?").bind(key))
        .await
        .map(|_| ())
}
