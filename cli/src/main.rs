//! `annals`: the admin command line of annals event stores (SQLite and PostgreSQL).
//!
//! ```text
//! annals --url sqlite://shop.db streams list --category cart
//! annals --url postgres://app@db/app stream show cart-42 --at 3
//! annals --url postgres://app@db/app events --correlation 0193...
//! annals --url postgres://app@db/app feed blockers
//! annals --url postgres://app@db/app tail --category cart --follow --json
//! annals --url sqlite://shop.db consumers
//! annals --url sqlite://shop.db consumers reset cart_summaries
//! annals --url sqlite://shop.db consumers watch cart_summaries@g2
//! annals --url sqlite://shop.db dead-letters list cart_summaries
//! annals --url sqlite://shop.db dead-letters skip cart_summaries 0193...
//! annals --url sqlite://shop.db migrate
//! ```
//!
//! This file routes: `args` parses the command line, `store` connects, `commands` runs a
//! command on any store, `output` prints.

mod args;
mod commands;
mod output;
mod store;

use std::process::ExitCode;

use args::Command;
use commands::Done;
use output::Output;
use store::Store;

fn main() -> ExitCode {
    let invocation = args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start: {e}")),
    };
    runtime.block_on(run(invocation))
}

async fn run(invocation: args::Invocation) -> ExitCode {
    let store = match store::connect(&invocation.url, invocation.schema.as_deref()).await {
        Ok(store) => store,
        Err(e) => return fail(&e.to_string()),
    };
    let mut out = Output::new(std::io::stdout().lock(), invocation.json);
    let done = match (store, invocation.command) {
        (Store::Postgres(store), Command::Migrate) => store.migrate().await.map(|()| Done::Ok),
        (Store::Sqlite(store), Command::Migrate) => store.migrate().await.map(|()| Done::Ok),
        (Store::Postgres(store), Command::Blockers) => store.feed_blockers().await.map(|blockers| {
            for blocker in &blockers {
                out.blocker(blocker);
            }
            Done::Ok
        }),
        (Store::Sqlite(_), Command::Blockers) => {
            out.note("SQLite writes one transaction at a time: nothing holds its feed back");
            Ok(Done::Ok)
        }
        (Store::Postgres(store), command) => commands::run(store, command, &mut out).await,
        (Store::Sqlite(store), command) => commands::run(store, command, &mut out).await,
    };
    match done {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::NothingFound(what)) => {
            eprintln!("annals: {what}");
            ExitCode::from(3)
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("annals: {message}");
    ExitCode::FAILURE
}
