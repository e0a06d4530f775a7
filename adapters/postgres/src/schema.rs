//! The PostgreSQL schema the tables live in, and the migrations that create them.

use std::fmt;
use std::str::FromStr;

/// A validated PostgreSQL schema name: `^[a-z_][a-z0-9_]{0,62}$`, not starting with `pg_`.
///
/// The schema name is the only text annals formats into SQL statements; everything else
/// is a bind parameter. Validation keeps it a plain identifier, and it is quoted anyway.
///
/// ```
/// use annals_postgres::SchemaName;
/// assert_eq!(SchemaName::default().as_str(), "annals");
/// assert!(SchemaName::new("tenant_42").is_ok());
/// assert!(SchemaName::new("x; drop table events").is_err());
/// assert!("Annals".parse::<SchemaName>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

/// A schema name that [`SchemaName::new`] refused.
///
/// ```
/// let refused = annals_postgres::SchemaName::new("Billing").unwrap_err();
/// assert_eq!(refused.name, "Billing");
/// assert!(refused.to_string().contains("lowercase"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid PostgreSQL schema name {name:?}: {reason}")]
pub struct InvalidSchemaName {
    /// The rejected name.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl SchemaName {
    /// The schema used when none is configured.
    ///
    /// ```
    /// # use annals_postgres::SchemaName;
    /// assert_eq!(SchemaName::default().as_str(), SchemaName::DEFAULT);
    /// ```
    pub const DEFAULT: &'static str = "annals";

    /// Validates `name`: 1 to 63 characters of lowercase ASCII letters, digits and `_`,
    /// not starting with a digit or with `pg_` (reserved by PostgreSQL), and neither
    /// `information_schema` nor `public`: annals' tables get a schema of their own.
    ///
    /// ```
    /// # use annals_postgres::SchemaName;
    /// assert!(SchemaName::new("tenant_42").is_ok());
    /// assert!(SchemaName::new("pg_tenant").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidSchemaName> {
        let name = name.into();
        let reason = if name.is_empty() {
            "a schema name must not be empty"
        } else if name.len() > 63 {
            "a schema name has at most 63 characters"
        } else if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            "use only lowercase ASCII letters, digits and `_`"
        } else if name.as_bytes()[0].is_ascii_digit() {
            "a schema name must start with a letter or `_`"
        } else if name.starts_with("pg_") {
            "names starting with `pg_` are reserved by PostgreSQL"
        } else if name == "information_schema" {
            "`information_schema` is PostgreSQL's own catalog schema; give annals a schema of its own"
        } else if name == "public" {
            "`public` is shared by every role and extension by default; give annals a schema of its own, \
             e.g. `annals`"
        } else {
            return Ok(SchemaName(name));
        };
        Err(InvalidSchemaName { name, reason })
    }

    /// The bare name, e.g. `annals`.
    ///
    /// ```
    /// assert_eq!(annals_postgres::SchemaName::new("billing").unwrap().as_str(), "billing");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an SQL identifier, e.g. `"annals"`.
    ///
    /// ```
    /// assert_eq!(annals_postgres::SchemaName::default().quoted(), "\"annals\"");
    /// ```
    pub fn quoted(&self) -> String {
        // Validation admits no `"`, so no escaping is needed.
        format!("\"{}\"", self.0)
    }
}

impl Default for SchemaName {
    fn default() -> Self {
        SchemaName(Self::DEFAULT.to_owned())
    }
}

impl FromStr for SchemaName {
    type Err = InvalidSchemaName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SchemaName::new(s)
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One step of the schema, as shipped in `adapters/postgres/migrations/`.
///
/// [`PostgresStore::migrate`](crate::PostgresStore::migrate) applies the steps not yet
/// recorded in `<schema>.annals_migrations`. Teams that run their own migration tool can
/// take the SQL instead:
///
/// ```
/// use annals_postgres::{migrations, SchemaName};
/// let schema = SchemaName::new("billing").unwrap();
/// for m in migrations() {
///     let sql = m.sql(&schema);
///     assert!(sql.contains("CREATE TABLE \"billing\".events"));
///     // write `sql` into your tool's migration `m.version`, `m.name` ...
/// #   break;
/// }
/// ```
///
/// Every statement of a migration refers to the schema as `{schema}`; [`sql`](Self::sql)
/// substitutes the quoted name. The schema itself must exist first
/// (`CREATE SCHEMA "billing"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Applied in increasing order, each once.
    pub version: i32,
    /// What the step does, e.g. `create_events`.
    pub name: &'static str,
    /// The SQL text with `{schema}` placeholders.
    pub template: &'static str,
}

impl Migration {
    /// The SQL of this step for `schema`.
    ///
    /// ```
    /// # use annals_postgres::{migrations, SchemaName};
    /// let sql = migrations()[0].sql(&SchemaName::default());
    /// assert!(sql.contains("CREATE TABLE \"annals\".events"));
    /// ```
    pub fn sql(&self, schema: &SchemaName) -> String {
        crate::sql::migration(self.template, schema)
    }
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "create_events", template: include_str!("../migrations/0001_create_events.sql") },
    Migration { version: 2, name: "subscriptions", template: include_str!("../migrations/0002_subscriptions.sql") },
    Migration { version: 3, name: "create_snapshots", template: include_str!("../migrations/0003_snapshots.sql") },
    Migration {
        version: 4,
        name: "create_parked_events",
        template: include_str!("../migrations/0004_parked_events.sql"),
    },
    Migration {
        version: 5,
        name: "refuse_invalid_rows",
        template: include_str!("../migrations/0005_refuse_invalid_rows.sql"),
    },
    Migration { version: 6, name: "json_as_written", template: include_str!("../migrations/0006_json_as_written.sql") },
    Migration { version: 7, name: "deadlines", template: include_str!("../migrations/0007_deadlines.sql") },
    Migration {
        version: 8,
        name: "notify_only_when_written",
        template: include_str!("../migrations/0008_notify_only_when_written.sql"),
    },
    Migration {
        version: 9,
        name: "feed_horizon_function",
        template: include_str!("../migrations/0009_feed_horizon_function.sql"),
    },
    Migration {
        version: 10,
        name: "feed_horizon_when_nothing_runs",
        template: include_str!("../migrations/0010_feed_horizon_when_nothing_runs.sql"),
    },
];

/// Every migration this version of annals-postgres knows, oldest first.
///
/// ```
/// let versions: Vec<i32> = annals_postgres::migrations().iter().map(|m| m.version).collect();
/// assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
/// ```
pub fn migrations() -> &'static [Migration] {
    MIGRATIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["annals", "_x", "a", "t_0123abcd", &"a".repeat(63)] {
            assert_eq!(SchemaName::new(name).unwrap().as_str(), name);
        }
        assert_eq!(SchemaName::new("annals").unwrap().quoted(), "\"annals\"");
    }

    #[test]
    fn invalid_names() {
        for name in [
            "",
            "x; drop",
            "x; drop schema annals cascade; --",
            "Annals",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "ünï",
            "pg_catalog",
            "information_schema",
            "public",
            &"a".repeat(64),
        ] {
            let error = SchemaName::new(name).unwrap_err();
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn migration_sql_names_the_schema_everywhere() {
        let schema = SchemaName::new("s1").unwrap();
        for m in migrations() {
            let sql = m.sql(&schema);
            assert!(!sql.contains("{schema}"));
            assert!(sql.contains("\"s1\"."), "{}", m.name);
        }
    }
}
