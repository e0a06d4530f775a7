//! [`ProcessError`]: why a process could not react to an input or carry out a reaction.

use crate::event::DecodeError;
use crate::store::StoreError;

/// Why a process could not react to an input or carry out a reaction. Transient ones
/// ([`is_transient`](Self::is_transient)) are waited out by the runner; the others park
/// the input or stop the runner, as its poison policy says.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The store failed (or, for a conflict, another runner was recording at the same time).
    #[error("process `{process}` instance `{instance}`: {what} failed: {source}")]
    Store {
        /// The process name.
        process: &'static str,
        /// The instance.
        instance: String,
        /// What was being done.
        what: &'static str,
        /// The store's error.
        #[source]
        source: Box<StoreError>,
    },
    /// An input does not decode as the type the process lists for it.
    #[error("process `{process}`: the {trigger} does not decode: {source}")]
    Decode {
        /// The process name.
        process: &'static str,
        /// The input.
        trigger: String,
        /// Why.
        #[source]
        source: Box<DecodeError>,
    },
    /// A state, command or deadline does not turn into JSON or back.
    #[error(
        "process `{process}` instance `{instance}`: {what} does not convert to or from JSON: {source}; \
         check its `Serialize`/`Deserialize` impls (a recorded value must still read with the current type)"
    )]
    Json {
        /// The process name.
        process: &'static str,
        /// The instance.
        instance: String,
        /// What did not convert.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A stored reaction is not what annals wrote.
    #[error(
        "process `{process}`: stream `{stream}` version {version} is not a recorded reaction: {detail}; \
         it is not what annals wrote (edited by hand, or another writer used the stream): repair or remove it"
    )]
    Record {
        /// The process name.
        process: &'static str,
        /// The instance stream.
        stream: String,
        /// The version of the bad event.
        version: u64,
        /// What is wrong.
        detail: String,
    },
    /// An input the process has no reaction for: a rejection not listed in `rejected(...)`.
    #[error(
        "process `{process}` instance `{instance}` cannot proceed: it does not handle the {trigger}; \
         list the command in `#[process(rejected(...))]` with a `React<Rejected<...>>` impl, then retry the parked event"
    )]
    Unhandled {
        /// The process name.
        process: &'static str,
        /// The instance.
        instance: String,
        /// The input.
        trigger: String,
    },
    /// A command failed for a reason other than a rejection, and retrying will not help.
    #[error("process `{process}`: command `{command_type}` to `{target}` failed: {detail}")]
    Command {
        /// The process name.
        process: &'static str,
        /// The command type.
        command_type: String,
        /// The aggregate id.
        target: String,
        /// Why.
        detail: String,
    },
    /// A command could not run for now (the store is unavailable or its stream kept
    /// changing); it is retried.
    #[error("process `{process}`: command `{command_type}` to `{target}` could not run yet: {detail}; retrying")]
    CommandBusy {
        /// The process name.
        process: &'static str,
        /// The command type.
        command_type: String,
        /// The aggregate id.
        target: String,
        /// Why.
        detail: String,
    },
    /// A reaction asked for something impossible (a deadline beyond the calendar).
    #[error("process `{process}` instance `{instance}`: {detail}")]
    Effect {
        /// The process name.
        process: &'static str,
        /// The instance.
        instance: String,
        /// What was asked.
        detail: String,
    },
}

impl ProcessError {
    /// Names `instance` where the error was made without knowing it.
    pub(crate) fn in_instance(mut self, name: &str) -> Self {
        if let ProcessError::Json { instance, .. } | ProcessError::Unhandled { instance, .. } = &mut self {
            if instance.is_empty() {
                name.clone_into(instance);
            }
        }
        self
    }

    /// Whether waiting and trying again can succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Store { source, .. } => source.is_transient() || source.is_conflict(),
            ProcessError::CommandBusy { .. } => true,
            _ => false,
        }
    }
}
