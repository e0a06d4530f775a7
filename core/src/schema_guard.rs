//! The schema guard: catches a breaking change to a stored event's shape before it
//! reaches production data.
//!
//! Run it in a test of your domain. It records, for every event of an aggregate, its
//! stored name, version and JSON shape in a file you commit next to your code. When an
//! event's shape changes but its `#[event(version = ...)]` does not, the test fails with
//! a readable diff; bump the version (and declare how old payloads upcast) and it passes,
//! recording the new shape.
//!
//! ```no_run
//! # use annals::prelude::*;
//! # #[derive(Event, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
//! # #[event(name = "cart.item_added")]
//! # pub struct ItemAdded { sku: String, qty: u32 }
//! # #[derive(Aggregate, Default)]
//! # #[aggregate(events(ItemAdded))]
//! # pub struct Cart;
//! # impl Apply<ItemAdded> for Cart { fn apply(&mut self, _: ItemAdded) {} }
//! use annals::schema_guard::SchemaGuard;
//!
//! #[test]
//! fn stored_event_shapes_only_change_with_a_version_bump() {
//!     SchemaGuard::<Cart>::new("tests/event_schemas/cart.json")
//!         .sample(ItemAdded { sku: "tea".into(), qty: 1 })
//!         .check();
//! }
//! # fn main() {}
//! ```
//!
//! Give samples whose optional fields are set (`Some`) and whose lists are non-empty, so
//! the shape shows their types. Outside CI the guard writes new and bumped events into
//! the file; with `CI=true` it only compares, and asks you to commit the updated file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::aggregate::Aggregate;
use crate::event::{Event, EventSet};

/// Records and compares the JSON shapes of an aggregate's events. See the [module docs](self).
pub struct SchemaGuard<A> {
    path: PathBuf,
    samples: BTreeMap<String, Recorded>,
    /// Older names (aliases) of the sampled events: they need no sample of their own.
    covered: BTreeSet<String>,
    allow_updates: bool,
    aggregate: PhantomData<fn() -> A>,
}

/// What the file keeps per event.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Recorded {
    version: u32,
    shape: Value,
}

/// What [`SchemaGuard::verify`] found when the shapes are compatible.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaReport {
    /// Events recorded for the first time.
    pub added: Vec<String>,
    /// Events whose version was bumped (their new shape was recorded).
    pub bumped: Vec<String>,
    /// Whether the file was written.
    pub written: bool,
}

/// Why [`SchemaGuard::verify`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaDrift {
    /// Shapes changed without a version bump (or versions went down).
    #[error("{0}")]
    Breaking(String),
    /// The file must change, but updates are not allowed here (CI).
    #[error(
        "{path} is out of date ({what}); run the tests locally (without CI=true) to record it, and commit the file"
    )]
    NotRecorded {
        /// The schema file.
        path: String,
        /// What would change.
        what: String,
    },
    /// The guard has no sample for some of the aggregate's events.
    #[error("no sample for event(s) {0}: add `.sample(...)` for each, so their shapes are guarded")]
    MissingSamples(String),
    /// The file could not be read or written.
    #[error("schema file {path}: {source}")]
    Io {
        /// The schema file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected form.
    #[error("schema file {path} is not a valid schema record: {source}; fix or delete it")]
    Parse {
        /// The schema file.
        path: String,
        /// What failed.
        #[source]
        source: serde_json::Error,
    },
}

impl<A: Aggregate> SchemaGuard<A> {
    /// A guard recording into `path` (relative paths are relative to the test's working
    /// directory, which cargo sets to the crate's root).
    pub fn new(path: impl AsRef<Path>) -> Self {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        SchemaGuard {
            path: path.as_ref().to_owned(),
            samples: BTreeMap::new(),
            covered: BTreeSet::new(),
            allow_updates: !in_ci,
            aggregate: PhantomData,
        }
    }

    /// Whether the guard may write the file (default: unless `CI=true`).
    pub fn allow_updates(mut self, allow: bool) -> Self {
        self.allow_updates = allow;
        self
    }

    /// Adds a sample of one of the aggregate's events; its shape is what is guarded.
    #[allow(clippy::panic, reason = "a test helper: a sample that does not serialize is a failed test")]
    #[track_caller]
    pub fn sample<E: Event + Into<A::Event>>(mut self, event: E) -> Self {
        self.covered.extend(E::ALIASES.iter().map(|alias| (*alias).to_owned()));
        let event = event.into();
        let payload = match event.to_payload() {
            Ok(p) => p,
            Err(e) => panic!("sample {event:?} does not serialize: {e}"),
        };
        self.samples
            .insert(event.event_type().to_owned(), Recorded { version: event.event_version(), shape: shape(&payload) });
        self
    }

    /// Panics with a readable message unless [`verify`](Self::verify) passes.
    #[allow(clippy::panic, reason = "a test assertion reports failure by panicking")]
    #[track_caller]
    pub fn check(self) {
        if let Err(drift) = self.verify() {
            panic!("{drift}");
        }
    }

    /// Compares the samples with the recorded file, and records new and bumped events
    /// when updates are allowed.
    pub fn verify(&self) -> Result<SchemaReport, SchemaDrift> {
        let path = self.path.display().to_string();
        let missing: Vec<&str> = A::Event::NAMES
            .iter()
            .copied()
            .filter(|n| !self.samples.contains_key(*n) && !self.covered.contains(*n))
            .collect();
        let recorded: BTreeMap<String, Recorded> = match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|source| SchemaDrift::Parse { path: path.clone(), source })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(SchemaDrift::Io { path, source }),
        };

        let mut breaking = String::new();
        let mut report = SchemaReport::default();
        for (name, now) in &self.samples {
            match recorded.get(name) {
                None => report.added.push(name.clone()),
                Some(before) if now.version == before.version => {
                    let mut diff = String::new();
                    compare(&before.shape, &now.shape, "", &mut diff);
                    if !diff.is_empty() {
                        let _ = writeln!(
                            breaking,
                            "event `{name}` changed its JSON shape but is still version {v}:\n{diff}\
                             bump it to `#[event(version = {next})]` and declare how v{v} payloads upcast \
                             (or undo the change)",
                            v = now.version,
                            next = now.version + 1
                        );
                    }
                }
                Some(before) if now.version > before.version => report.bumped.push(name.clone()),
                Some(before) => {
                    let _ = writeln!(
                        breaking,
                        "event `{name}` went from version {} down to {}: versions only go up, stored events keep theirs",
                        before.version, now.version
                    );
                }
            }
        }
        if !breaking.is_empty() {
            return Err(SchemaDrift::Breaking(breaking));
        }
        if !missing.is_empty() {
            return Err(SchemaDrift::MissingSamples(missing.join(", ")));
        }
        if report.added.is_empty() && report.bumped.is_empty() {
            return Ok(report);
        }
        if !self.allow_updates {
            let mut what = Vec::new();
            if !report.added.is_empty() {
                what.push(format!("new: {}", report.added.join(", ")));
            }
            if !report.bumped.is_empty() {
                what.push(format!("bumped: {}", report.bumped.join(", ")));
            }
            return Err(SchemaDrift::NotRecorded { path, what: what.join("; ") });
        }
        // Keep records of events no longer sampled: their stored payloads still exist.
        let mut updated = recorded;
        updated.extend(self.samples.iter().map(|(k, v)| (k.clone(), v.clone())));
        let io = |source| SchemaDrift::Io { path: path.clone(), source };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(&updated)
            .map_err(|source| SchemaDrift::Parse { path: path.clone(), source })?;
        std::fs::write(&self.path, text + "\n").map_err(io)?;
        report.written = true;
        Ok(report)
    }
}

/// The JSON shape of a value: objects keep their keys, every other value becomes the
/// name of its JSON type; a list is the shape of its first element.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "boolean".into(),
        Value::Number(n) if n.is_f64() => "number".into(),
        Value::Number(_) => "integer".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::Object(fields) => {
            Value::Object(fields.iter().map(|(k, v)| (k.clone(), shape(v))).collect::<Map<_, _>>())
        }
    }
}

/// Appends one line per difference between two shapes, with the field's path.
fn compare(before: &Value, now: &Value, at: &str, out: &mut String) {
    let field = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match (before, now) {
        (Value::Object(b), Value::Object(n)) => {
            for (key, was) in b {
                match n.get(key) {
                    Some(is) => compare(was, is, &field(key), out),
                    None => {
                        let _ = writeln!(out, "  - `{}`: {} (removed)", field(key), describe(was));
                    }
                }
            }
            for (key, is) in n.iter().filter(|(k, _)| !b.contains_key(*k)) {
                let _ = writeln!(out, "  + `{}`: {} (added)", field(key), describe(is));
            }
        }
        (Value::Array(b), Value::Array(n)) if !b.is_empty() && !n.is_empty() => {
            compare(&b[0], &n[0], &format!("{at}[]"), out)
        }
        _ if before != now => {
            let name = if at.is_empty() { "the payload" } else { at };
            let _ = writeln!(out, "  ~ `{name}`: {} → {}", describe(before), describe(now));
        }
        _ => {}
    }
}

fn describe(shape: &Value) -> String {
    match shape {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
