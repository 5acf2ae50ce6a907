//! The database layer behaves the same on every backend.

use scrm_db::testing::{TestDb, fresh};
use scrm_db::{Backend, DbError, query};

async fn setup(backend: Backend) -> TestDb {
    fresh(backend).await.expect("fresh test database")
}

#[derive(sqlx::FromRow, Debug, PartialEq)]
struct TenantRow {
    id: i64,
    name: String,
    corp_id: Option<String>,
}

async fn inserts_return_ids_and_rows_round_trip(t: TestDb) {
    let mut tx = t.db.begin().await.unwrap();
    let id = tx
        .insert_id(
            query("INSERT INTO tenant (name, corp_id, created_at, updated_at) VALUES (?, ?, ?, ?)")
                .bind("示例公司 🚀")
                .bind(None::<String>)
                .bind(1_i64)
                .bind(1_i64),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row: TenantRow =
        t.db.fetch_one(query("SELECT id, name, corp_id FROM tenant WHERE id = ?").bind(id))
            .await
            .unwrap();
    assert_eq!(
        row,
        TenantRow {
            id,
            name: "示例公司 🚀".into(),
            corp_id: None
        }
    );
}

async fn a_duplicate_key_is_a_conflict(t: TestDb) {
    let insert =
        || query("INSERT INTO tenant (name, created_at, updated_at) VALUES (?, 0, 0)").bind("dup");
    t.db.execute(insert()).await.unwrap();
    let err = t.db.execute(insert()).await.unwrap_err();
    assert!(matches!(err, DbError::Conflict(_)), "{err:?}");
}

async fn a_dropped_transaction_rolls_back(t: TestDb) {
    {
        let mut tx = t.db.begin().await.unwrap();
        tx.execute(query(
            "INSERT INTO tenant (name, created_at, updated_at) VALUES ('gone', 0, 0)",
        ))
        .await
        .unwrap();
    }
    let n =
        t.db.fetch_i64(query("SELECT COUNT(*) FROM tenant WHERE name = 'gone'"))
            .await
            .unwrap();
    assert_eq!(n, 0);
}

async fn in_lists_bind_every_value(t: TestDb) {
    for name in ["a", "b", "c"] {
        t.db.execute(
            query("INSERT INTO tenant (name, created_at, updated_at) VALUES (?, 0, 0)").bind(name),
        )
        .await
        .unwrap();
    }
    let mut q = query("SELECT COUNT(*) FROM tenant WHERE name IN ");
    q.push_in_list(["a", "c", "zz"]);
    assert_eq!(t.db.fetch_i64(q).await.unwrap(), 2);
}

/// A read transaction sees one moment: a write committed between its statements stays out of
/// every later read (MySQL's pool sessions are READ COMMITTED, where a plain snapshot would
/// last one statement), and the pool's next transaction sees the write again.
async fn a_read_transaction_keeps_one_snapshot(t: TestDb) {
    let count = "SELECT COUNT(*) FROM tenant WHERE name = 'snap'";
    let mut read = t.db.begin_read().await.unwrap();
    assert_eq!(read.fetch_i64(query(count)).await.unwrap(), 0);
    t.db.execute(query(
        "INSERT INTO tenant (name, created_at, updated_at) VALUES ('snap', 0, 0)",
    ))
    .await
    .unwrap();
    assert_eq!(read.fetch_i64(query(count)).await.unwrap(), 0);
    read.commit().await.unwrap();
    assert_eq!(t.db.fetch_i64(query(count)).await.unwrap(), 1);
    // On MySQL the connection went back to READ COMMITTED: a writer's transaction sees
    // commits made after its first read (what the job tables' locking relies on).
    if t.db.backend() == Backend::MySql {
        let mut tx = t.db.begin().await.unwrap();
        let total = "SELECT COUNT(*) FROM tenant";
        let before = tx.fetch_i64(query(total)).await.unwrap();
        t.db.execute(query(
            "INSERT INTO tenant (name, created_at, updated_at) VALUES ('snap2', 0, 0)",
        ))
        .await
        .unwrap();
        assert_eq!(tx.fetch_i64(query(total)).await.unwrap(), before + 1);
        tx.commit().await.unwrap();
    }
}

scrm_db::db_tests!(crate::setup;
    inserts_return_ids_and_rows_round_trip,
    a_duplicate_key_is_a_conflict,
    a_dropped_transaction_rolls_back,
    in_lists_bind_every_value,
    a_read_transaction_keeps_one_snapshot,
);
