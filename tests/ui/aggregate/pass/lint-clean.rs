//! The generated code raises no warning in a crate with strict lints.
#![deny(warnings, unused, unused_qualifications, unused_results, missing_docs)]
#![deny(missing_debug_implementations, trivial_casts, trivial_numeric_casts)]
#![deny(unreachable_pub, unused_import_braces, unused_lifetimes, single_use_lifetimes)]
#![deny(rust_2018_idioms, non_ascii_idents, let_underscore_drop)]
#![deny(clippy::all, clippy::pedantic)]

use annals::prelude::*;
use serde::{Deserialize, Serialize};

/// An event with the default name.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Opened;

/// An event with an explicit name and version.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "lint.noted", version = 2, oldest = 2)]
pub struct Noted {
    /// The note.
    pub text: String,
}

/// A command.
#[derive(Debug)]
pub struct Note {
    /// The note.
    pub text: String,
}

/// The error.
#[derive(Debug, thiserror::Error)]
#[error("empty note")]
pub struct EmptyNote;

/// A public aggregate: its generated enums are public and documented.
#[derive(Aggregate, Default, Debug)]
#[aggregate(name = "notebook", events(Opened, Noted), commands(Note), error = EmptyNote)]
pub struct Notebook {
    notes: Vec<String>,
}

impl Apply<Opened> for Notebook {
    fn apply(&mut self, _: Opened) {}
}

impl Apply<Noted> for Notebook {
    fn apply(&mut self, event: Noted) {
        self.notes.push(event.text);
    }
}

impl Handle<Note> for Notebook {
    fn handle(&self, command: &Note) -> Decision<Self> {
        if command.text.is_empty() {
            return Err(EmptyNote);
        }
        Ok(vec![Noted { text: command.text.clone() }.into()])
    }
}

mod private {
    use annals::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
    pub(crate) struct Ticked;

    /// A crate-private aggregate in a private module.
    #[derive(Aggregate, Default, Debug)]
    #[aggregate(events(Ticked))]
    pub(crate) struct Clock(pub(crate) u32);

    impl Apply<Ticked> for Clock {
        fn apply(&mut self, _: Ticked) {
            self.0 += 1;
        }
    }
}

fn main() {
    let notebook = Notebook::default();
    let events = notebook.handle(&NotebookCommand::from(Note { text: "hi".to_owned() }));
    assert_eq!(events.map(|e| e.len()).ok(), Some(1));
    let mut clock = private::Clock::default();
    clock.apply_event(private::ClockEvent::from(private::Ticked));
    assert_eq!(clock.0, 1);
    let _ = <private::ClockEvent as EventSet>::NAMES;
}
