//! The command line: what each command and option is, parsed into [`Invocation`].

use annals::store::Checkpoint;
use chrono::{DateTime, Utc};
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command as Clap};
use uuid::Uuid;

/// A parsed command line.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// The store's URL: `sqlite://FILE` or `postgres://...`.
    pub(crate) url: String,
    /// The PostgreSQL schema of the store (default `annals`).
    pub(crate) schema: Option<String>,
    /// JSON lines instead of text.
    pub(crate) json: bool,
    pub(crate) command: Command,
}

/// What to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Apply the store's migrations.
    Migrate,
    /// List streams.
    Streams { category: Option<String>, limit: usize },
    /// Show one stream's events, up to a version or a time.
    Stream { id: String, at: Option<u64>, as_of: Option<DateTime<Utc>> },
    /// Every event of one correlation id.
    Correlated { id: Uuid },
    /// The feed: every event in commit order, after a checkpoint; following it if asked.
    Tail { category: Option<String>, types: Vec<String>, after: Checkpoint, limit: usize, follow: bool },
    /// Every consumer and its checkpoint.
    Consumers,
    /// Delete a consumer's checkpoint: it starts again from the first event.
    Reset { consumer: String },
    /// Show a consumer's progress through the feed until it has caught up.
    Watch { consumer: String, interval: std::time::Duration },
    /// What holds the feed back (PostgreSQL).
    Blockers,
    /// A consumer's parked events.
    DeadLetters { consumer: String },
    /// Drop a parked event without applying it.
    Skip { consumer: String, event: Uuid },
}

/// The command line's definition.
fn cli() -> Clap {
    let json =
        Arg::new("json").long("json").action(ArgAction::SetTrue).global(true).help("print JSON, one object per line");
    Clap::new("annals")
        .about("Inspect and steer an annals event store (SQLite or PostgreSQL)")
        .after_help(
            "Exit codes: 0 done; 1 the store failed (unreachable, bad data); 2 the command line is wrong; \
             3 nothing found (no such stream, no such parked event).",
        )
        .subcommand_required(true)
        .arg(
            Arg::new("url")
                .long("url")
                .env("DATABASE_URL")
                .required(true)
                .help("the store: sqlite://FILE or postgres://USER@HOST/DB"),
        )
        .arg(Arg::new("schema").long("schema").help("the PostgreSQL schema of the store [default: annals]"))
        .arg(json)
        .subcommand(Clap::new("migrate").about("apply the store's migrations (safe to repeat)"))
        .subcommand(
            Clap::new("streams").about("list streams").subcommand_required(true).subcommand(
                Clap::new("list")
                    .about("list streams by id, with their versions")
                    .arg(Arg::new("category").long("category").help("only streams `CATEGORY-...`"))
                    .arg(limit("1000")),
            ),
        )
        .subcommand(
            Clap::new("stream").about("show a stream").subcommand_required(true).subcommand(
                Clap::new("show")
                    .about("a stream's events, decoded JSON and metadata")
                    .arg(Arg::new("id").required(true).help("the stream id, e.g. cart-42"))
                    .arg(
                        Arg::new("at")
                            .long("at")
                            .value_parser(value_parser!(u64))
                            .conflicts_with("as-of")
                            .help("only the events up to this version"),
                    )
                    .arg(
                        Arg::new("as-of")
                            .long("as-of")
                            .value_parser(|text: &str| {
                                DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| {
                                    format!("`{text}` is not an RFC 3339 time such as 2026-12-01T12:00:00Z: {e}")
                                })
                            })
                            .help("only the events recorded at or before this time (RFC 3339)"),
                    ),
            ),
        )
        .subcommand(
            Clap::new("events").about("find events across streams").arg(
                Arg::new("correlation")
                    .long("correlation")
                    .required(true)
                    .value_parser(value_parser!(Uuid))
                    .help("every event of this correlation id, in global order"),
            ),
        )
        .subcommand(
            Clap::new("tail")
                .about("the events of every stream in commit order (the feed)")
                .arg(Arg::new("category").long("category").help("only streams `CATEGORY-...`"))
                .arg(
                    Arg::new("type")
                        .long("type")
                        .action(ArgAction::Append)
                        .help("only events of this type (repeatable)"),
                )
                .arg(
                    Arg::new("after")
                        .long("after")
                        .value_parser(|text: &str| text.parse::<Checkpoint>().map_err(|e| e.to_string()))
                        .help("start after this checkpoint, as printed (`MAJOR:MINOR`) [default: the start]"),
                )
                .arg(limit("100"))
                .arg(
                    Arg::new("follow")
                        .long("follow")
                        .short('f')
                        .action(ArgAction::SetTrue)
                        .help("keep printing new events as they are committed"),
                ),
        )
        .subcommand(
            Clap::new("consumers")
                .about("every consumer and where it stands")
                .subcommand(Clap::new("list").about("every consumer and its checkpoint (the default)"))
                .subcommand(
                    Clap::new("reset")
                        .about("delete a consumer's checkpoint: it starts again from the first event")
                        .arg(consumer()),
                )
                .subcommand(
                    Clap::new("watch")
                        .about(
                            "a progress bar of a consumer catching up (a rebuild, a new generation), until it has \
                             caught up; with --json a line per look",
                        )
                        .arg(consumer())
                        .arg(
                            Arg::new("interval")
                                .long("interval")
                                .value_parser(value_parser!(u64))
                                .default_value("500")
                                .help("milliseconds between looks"),
                        ),
                ),
        )
        .subcommand(
            Clap::new("feed")
                .about("the feed itself")
                .subcommand_required(true)
                .subcommand(Clap::new("blockers").about("the transactions that hold the feed back now (PostgreSQL)")),
        )
        .subcommand(
            Clap::new("dead-letters")
                .about("a consumer's parked (poison) events")
                .subcommand_required(true)
                .subcommand(Clap::new("list").about("list them, in feed order").arg(consumer()))
                .subcommand(
                    Clap::new("skip")
                        .about("drop one without applying it")
                        .arg(consumer())
                        .arg(Arg::new("event").required(true).value_parser(value_parser!(Uuid)).help("the event id")),
                ),
        )
}

fn limit(default: &'static str) -> Arg {
    Arg::new("limit")
        .long("limit")
        .value_parser(value_parser!(usize))
        .default_value(default)
        .help("print at most this many (with --follow: per read)")
}

fn consumer() -> Arg {
    Arg::new("consumer").required(true).help("the consumer's name (its checkpoint's key)")
}

/// Parses the process's arguments; prints help or the mistake and exits (code 2) when
/// they are not a command.
pub(crate) fn parse() -> Invocation {
    invocation(&cli().get_matches())
}

fn invocation(matches: &ArgMatches) -> Invocation {
    let text = |m: &ArgMatches, name: &str| m.get_one::<String>(name).cloned();
    let command = match matches.subcommand() {
        Some(("migrate", _)) => Command::Migrate,
        Some(("streams", m)) => {
            let m = m.subcommand_matches("list").unwrap_or(m);
            Command::Streams { category: text(m, "category"), limit: m.get_one("limit").copied().unwrap_or(1000) }
        }
        Some(("stream", m)) => {
            let m = m.subcommand_matches("show").unwrap_or(m);
            Command::Stream {
                id: text(m, "id").unwrap_or_default(),
                at: m.get_one("at").copied(),
                as_of: m.get_one("as-of").copied(),
            }
        }
        Some(("events", m)) => Command::Correlated { id: m.get_one("correlation").copied().unwrap_or_default() },
        Some(("consumers", m)) => match m.subcommand() {
            Some(("reset", m)) => Command::Reset { consumer: text(m, "consumer").unwrap_or_default() },
            Some(("watch", m)) => Command::Watch {
                consumer: text(m, "consumer").unwrap_or_default(),
                interval: std::time::Duration::from_millis(m.get_one("interval").copied().unwrap_or(500)),
            },
            _ => Command::Consumers,
        },
        Some(("feed", _)) => Command::Blockers,
        Some(("tail", m)) => Command::Tail {
            category: text(m, "category"),
            types: m.get_many::<String>("type").map(|types| types.cloned().collect()).unwrap_or_default(),
            after: m.get_one("after").copied().unwrap_or(Checkpoint::START),
            limit: m.get_one("limit").copied().unwrap_or(100),
            follow: m.get_flag("follow"),
        },
        Some(("dead-letters", m)) => match m.subcommand() {
            Some(("skip", m)) => Command::Skip {
                consumer: text(m, "consumer").unwrap_or_default(),
                event: m.get_one("event").copied().unwrap_or_default(),
            },
            Some((_, m)) => Command::DeadLetters { consumer: text(m, "consumer").unwrap_or_default() },
            None => Command::DeadLetters { consumer: String::new() },
        },
        _ => Command::Consumers,
    };
    Invocation {
        url: text(matches, "url").unwrap_or_default(),
        schema: text(matches, "schema"),
        json: matches.get_flag("json"),
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Invocation {
        invocation(&cli().try_get_matches_from(args).unwrap())
    }

    #[test]
    fn the_definition_is_consistent() {
        cli().debug_assert();
    }

    #[test]
    fn commands_parse() {
        let tail =
            parse(&["annals", "--url", "sqlite://x.db", "tail", "--type", "a", "--type", "b", "--after", "0:7", "-f"]);
        assert!(matches!(
            tail.command,
            Command::Tail { ref types, after, follow: true, .. } if types == &["a", "b"] && after == Checkpoint::from_parts(0, 7)
        ));
        let show = parse(&["annals", "--url", "u", "--json", "stream", "show", "cart-1", "--at", "3"]);
        assert!(
            show.json && matches!(show.command, Command::Stream { ref id, at: Some(3), as_of: None } if id == "cart-1")
        );
        let as_of = parse(&["annals", "--url", "u", "stream", "show", "c-1", "--as-of", "2026-12-01T12:00:00Z"]);
        assert!(matches!(as_of.command, Command::Stream { as_of: Some(_), .. }));
        assert!(cli()
            .try_get_matches_from([
                "annals",
                "--url",
                "u",
                "stream",
                "show",
                "c-1",
                "--at",
                "1",
                "--as-of",
                "2026-12-01T12:00:00Z"
            ])
            .is_err());
        assert!(cli().try_get_matches_from(["annals", "--url", "u", "tail", "--after", "x"]).is_err());
    }
}
