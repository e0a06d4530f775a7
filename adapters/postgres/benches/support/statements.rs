//! Counting statements with `pg_stat_statements`, for the benches that report round trips
//! and server time (included with `#[path]`: each bench is its own crate).

use annals_postgres::sqlx::{self, postgres::PgPool};

/// Whether `pg_stat_statements` counts statements (the throwaway server loads it), after
/// forgetting what it counted.
pub async fn reset_statements(pool: &PgPool) -> bool {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(pool).await.is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()").execute(pool).await.is_ok()
}

/// Prints the statements since the last reset, most called first: calls, how many were
/// planned, planning and execution per call; and, given `per = (n, what)`, statements per
/// `what` for `n` of them.
#[allow(dead_code, reason = "not every bench prints statements")]
pub async fn print_statements(pool: &PgPool, side: &str, per: Option<(u64, &str)>) {
    let rows: Vec<(String, i64, i64, f64, f64)> = sqlx::query_as(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 60), calls, plans, total_plan_time, total_exec_time \
         FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%' ORDER BY calls DESC LIMIT 6",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    let calls: i64 = rows.iter().map(|row| row.1).sum();
    match per {
        Some((n, what)) => println!("   {side}: {:.3} statements per {what}, by statement:", calls as f64 / n as f64),
        None => println!("   {side}, by statement:"),
    }
    for (query, calls, plans, plan, exec) in rows {
        let per_call = |ms: f64| ms * 1e3 / calls.max(1) as f64;
        println!(
            "      {calls:>6} calls ({plans} planned), {:>7.1} µs planning + {:>7.1} µs executing per call: {query}",
            per_call(plan),
            per_call(exec)
        );
    }
}
