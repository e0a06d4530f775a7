//! What a conflict costs on PostgreSQL: 2,000 appends to an existing stream expecting a
//! stale version, each rejected with `StoreError::Conflict`, against raw sqlx doing what
//! a hand-written store needs to report the same conflict with the actual version (the
//! conditional insert that writes nothing, then a read of the version). Statements per
//! conflict from `pg_stat_statements` (a throwaway server loads it; `DATABASE_URL` may
//! not). `cargo bench -p annals-postgres --bench conflicts`; best of 3. Also counts the
//! subscriber wake-ups (NOTIFY) the rejected appends send.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark reports failure by panicking")]

use std::time::{Duration, Instant};

use annals::{EventStore, ExpectedVersion, NewEvent, StoreError};
use annals_postgres::sqlx;
use serde_json::json;

const CONFLICTS: u32 = 2_000;
const ROUNDS: usize = 3;

fn event() -> NewEvent {
    NewEvent::new("cart.item_added", 1, json!({ "sku": "tea", "qty": 1 }))
}

async fn statements(pool: &sqlx::PgPool, schema: &str) -> Option<i64> {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT sum(calls)::int8 FROM pg_stat_statements WHERE query LIKE '%' || $1 || '%' \
         AND query NOT LIKE '%pg_stat_statements%'",
    )
    .bind(schema)
    .fetch_one(pool)
    .await
    .ok()
    .flatten()
}

async fn reset(pool: &sqlx::PgPool) -> bool {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(pool).await.is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await.is_ok()
}

/// The notifications received since the last call: everything before a marker sent now
/// (notifications arrive in commit order).
async fn drain(listener: &mut sqlx::postgres::PgListener, pool: &sqlx::PgPool, channel: &str) -> u32 {
    sqlx::query("SELECT pg_notify($1, 'marker')").bind(channel).execute(pool).await.unwrap();
    let mut received = 0;
    while listener.recv().await.unwrap().payload() != "marker" {
        received += 1;
    }
    received
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = annals_postgres::testing::fresh_store().await.unwrap();
        let schema = store.schema().as_str().to_owned();
        let quoted = store.schema().quoted();
        store.append("cart-1", ExpectedVersion::Exact(0), vec![event(), event()]).await.unwrap();
        let pool = store.pool().clone();
        let counting = reset(&pool).await;
        let (mut annals, mut raw) = (Vec::new(), Vec::new());
        let (mut annals_calls, mut raw_calls) = (None, None);
        let channel = format!("annals:{schema}");
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await.unwrap();
        listener.listen(&channel).await.unwrap();
        let mut notifications = 0;
        for _ in 0..ROUNDS {
            reset(&pool).await;
            drain(&mut listener, &pool, &channel).await;
            let started = Instant::now();
            for _ in 0..CONFLICTS {
                let outcome = store.append("cart-1", ExpectedVersion::Exact(1), vec![event()]).await;
                assert!(matches!(outcome, Err(StoreError::Conflict { actual: 2, .. })), "{outcome:?}");
            }
            annals.push(started.elapsed());
            annals_calls = statements(&pool, &schema).await;
            notifications = drain(&mut listener, &pool, &channel).await;

            reset(&pool).await;
            let insert = format!(
                "INSERT INTO {quoted}.events (stream_id, stream_version, event_id, event_type, event_version, \
                 payload, metadata) \
                 SELECT $1, 2, $2, 'cart.item_added', 1, '{{}}'::json, '{{}}'::json \
                 WHERE (SELECT coalesce(max(stream_version), 0) FROM {quoted}.events WHERE stream_id = $1) = 1 \
                 RETURNING global_position"
            );
            let version = format!("SELECT coalesce(max(stream_version), 0) FROM {quoted}.events WHERE stream_id = $1");
            let started = Instant::now();
            for _ in 0..CONFLICTS {
                let written: Option<i64> = sqlx::query_scalar(&insert)
                    .bind("cart-1")
                    .bind(uuid::Uuid::now_v7())
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                assert!(written.is_none());
                let actual: i64 = sqlx::query_scalar(&version).bind("cart-1").fetch_one(&pool).await.unwrap();
                assert_eq!(actual, 2);
            }
            raw.push(started.elapsed());
            raw_calls = statements(&pool, &schema).await;
        }
        let best = |times: Vec<Duration>| times.into_iter().min().unwrap();
        let (annals, raw) = (best(annals), best(raw));
        let per = |t: Duration| t.as_secs_f64() * 1e6 / f64::from(CONFLICTS);
        let calls = |c: Option<i64>| match c {
            Some(c) if counting => format!("{:.2}", c as f64 / f64::from(CONFLICTS)),
            _ => "n/a (no pg_stat_statements)".to_owned(),
        };
        println!("{CONFLICTS} conflicting appends, best of {ROUNDS}:");
        println!("   annals:   {:>7.1} µs per conflict, statements per conflict {}", per(annals), calls(annals_calls));
        println!("   raw sqlx: {:>7.1} µs per conflict, statements per conflict {}", per(raw), calls(raw_calls));
        println!("   annals / raw (time): {:.2}", annals.as_secs_f64() / raw.as_secs_f64());
        println!("   subscriber wake-ups sent by annals' {CONFLICTS} rejected appends (last round): {notifications}");
    });
}
