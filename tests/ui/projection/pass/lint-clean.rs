//! The generated projection and upcasting code raises no warning in a crate with strict
//! lints.
#![deny(warnings, unused, unused_qualifications, unused_results, missing_docs)]
#![deny(missing_debug_implementations, trivial_casts, trivial_numeric_casts)]
#![deny(unreachable_pub, unused_import_braces, unused_lifetimes, single_use_lifetimes)]
#![deny(rust_2018_idioms, non_ascii_idents, let_underscore_drop)]
#![deny(clippy::all, clippy::pedantic)]

use annals::prelude::*;
use annals::BoxError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version 1 called the text `body`.
///
/// # Errors
/// When the payload has no `body`.
pub fn rename_body(mut v1: Value) -> Result<Value, BoxError> {
    let body = v1.as_object_mut().and_then(|o| o.remove("body")).ok_or("no `body`")?;
    v1["text"] = body;
    Ok(v1)
}

/// Version 2, upcast from version 1 by a function.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "lint.noted", version = 2, upcast(from = 1, with = rename_body))]
pub struct NotedV2 {
    /// The note.
    pub text: String,
}

/// Version 3, upcast from version 2 by `From`, once stored under another name.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "lint.noted", version = 3, previous = NotedV2, aliases("Noted"))]
pub struct Noted {
    /// The note.
    pub text: String,
    /// Whether it is pinned.
    pub pinned: bool,
}

impl From<NotedV2> for Noted {
    fn from(v2: NotedV2) -> Self {
        Noted { text: v2.text, pinned: false }
    }
}

/// An event with the defaults.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Cleared;

/// What the handlers write to.
#[derive(Debug, Default)]
pub struct Log(pub Vec<String>);

/// A public projection with a context.
#[derive(Projection, Default, Debug)]
#[projection(name = "lint_notes", events(Noted, Cleared), context = Log)]
pub struct Notes {
    count: usize,
}

impl On<Noted> for Notes {
    async fn on(&mut self, event: Noted, _: &Envelope, log: &mut Log) -> Result<(), BoxError> {
        self.count += 1;
        log.0.push(event.text);
        Ok(())
    }
}

impl On<Cleared> for Notes {
    async fn on(&mut self, _: Cleared, _: &Envelope, _: &mut Log) -> Result<(), BoxError> {
        self.count = 0;
        Ok(())
    }
}

mod private {
    use annals::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub(crate) struct Ticked;

    /// A crate-private projection in a private module, with the default context.
    #[derive(Projection, Default, Debug)]
    #[projection(events(Ticked))]
    pub(crate) struct Ticks(pub(crate) u32);

    impl On<Ticked> for Ticks {
        async fn on(&mut self, _: Ticked, _: &Envelope, (): &mut ()) -> Result<(), annals::BoxError> {
            self.0 += 1;
            Ok(())
        }
    }
}

fn main() {
    assert_eq!(<Notes as Projection>::EVENT_TYPES, ["lint.noted", "Noted", "Cleared"]);
    assert_eq!(<private::Ticks as Projection>::NAME, "ticks");
    assert_eq!(private::Ticks::default().0, 0);
    assert_eq!(Notes::default().count, 0);
    let noted = Noted::decode_version(1, &serde_json::json!({"body": "hi"})).ok();
    assert_eq!(noted.map(|n| n.text), Some("hi".to_owned()));
}
