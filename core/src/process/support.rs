//! What the code `#[derive(ProcessManager)]` generates calls (through `annals::__private`).

use std::fmt::Display;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;

use super::effects::Effects;
use super::error::ProcessError;
use super::record::{SentCommand, Trigger};
use super::{React, Rejected};
use crate::aggregate::Handle;
use crate::envelope::{Envelope, Metadata};
use crate::event::{DecodeError, Event};
use crate::repository::{ExecuteError, Repository};
use crate::store::EventStore;

/// The instance an event of type `E` belongs to: its `correlate_by` field, as text.
pub fn correlate_by<E: Event, T: Display>(
    envelope: &Envelope,
    field: fn(&E) -> &T,
) -> Result<Option<String>, DecodeError> {
    let event = crate::event::decode_event::<E>(envelope)?;
    Ok(Some(field(&event).to_string()))
}

/// The instance an event belongs to, by the process's `correlate_with` function.
pub fn correlate_with(
    envelope: &Envelope,
    function: fn(&Envelope) -> Option<String>,
) -> Result<Option<String>, DecodeError> {
    Ok(function(envelope))
}

/// Decodes an event trigger as `E` and runs `P`'s `React<E>`.
pub fn react_to_event<P: React<E> + super::Process, E: Event>(
    process: &mut P,
    trigger: &Trigger,
    effects: &mut Effects<P>,
) -> Result<(), ProcessError> {
    let Some(envelope) = trigger.envelope() else { return Err(unhandled::<P>(trigger)) };
    let event = crate::event::decode_event::<E>(&envelope).map_err(|source| ProcessError::Decode {
        process: P::NAME,
        trigger: trigger.describe(),
        source: Box::new(source),
    })?;
    process.react(&event, effects);
    Ok(())
}

/// Decodes a deadline trigger as `D` and runs `P`'s `React<D>`.
pub fn react_to_deadline<P: React<D> + super::Process, D: DeserializeOwned>(
    process: &mut P,
    trigger: &Trigger,
    effects: &mut Effects<P>,
) -> Result<(), ProcessError> {
    let Trigger::Deadline { payload, .. } = trigger else { return Err(unhandled::<P>(trigger)) };
    let deadline = D::deserialize(payload).map_err(|source| json_error::<P>(trigger, source))?;
    process.react(&deadline, effects);
    Ok(())
}

/// Decodes a rejection trigger's command as `C` and runs `P`'s `React<Rejected<C>>`.
pub fn react_to_rejection<P: React<Rejected<C>> + super::Process, C: DeserializeOwned>(
    process: &mut P,
    trigger: &Trigger,
    effects: &mut Effects<P>,
) -> Result<(), ProcessError> {
    let Trigger::Rejected { payload, target, reason, .. } = trigger else { return Err(unhandled::<P>(trigger)) };
    let command = C::deserialize(payload).map_err(|source| json_error::<P>(trigger, source))?;
    process.react(&Rejected { command, target: target.clone(), reason: reason.clone() }, effects);
    Ok(())
}

/// The error of an input `P` has no reaction for.
pub fn unhandled<P: super::Process>(trigger: &Trigger) -> ProcessError {
    ProcessError::Unhandled { process: P::NAME, instance: String::new(), trigger: trigger.describe() }
}

fn json_error<P: super::Process>(trigger: &Trigger, source: serde_json::Error) -> ProcessError {
    ProcessError::Json { process: P::NAME, instance: String::new(), what: trigger.describe(), source }
}

/// Runs a recorded command as `C` on aggregate `A` (idempotently, by the key in `metadata`).
pub fn dispatch_command<'a, P, A, C, S>(
    store: &'a S,
    command: &'a SentCommand,
    metadata: Metadata,
) -> BoxFuture<'a, Result<Result<(), String>, ProcessError>>
where
    P: super::Process,
    A: Handle<C>,
    A::Error: Display,
    C: DeserializeOwned + Send + 'a,
    S: EventStore,
{
    async move {
        let failed = |detail: String| ProcessError::Command {
            process: P::NAME,
            command_type: command.command_type.clone(),
            target: command.target.clone(),
            detail,
        };
        let value = C::deserialize(&command.payload)
            .map_err(|e| failed(format!("the recorded command does not decode: {e}")))?;
        let repository = Repository::<A, S>::new(store.clone());
        match repository.execute_with(&command.target, value, metadata).await {
            Ok(_) => Ok(Ok(())),
            Err(ExecuteError::Rejected(error)) => Ok(Err(error.to_string())),
            Err(error @ ExecuteError::Conflict { .. }) => Err(ProcessError::CommandBusy {
                process: P::NAME,
                command_type: command.command_type.clone(),
                target: command.target.clone(),
                detail: error.to_string(),
            }),
            Err(ExecuteError::Store(source)) if source.is_transient() => Err(ProcessError::CommandBusy {
                process: P::NAME,
                command_type: command.command_type.clone(),
                target: command.target.clone(),
                detail: source.to_string(),
            }),
            Err(other) => Err(failed(other.to_string())),
        }
    }
    .boxed()
}

/// The error of a command type no route of `P` names (a record edited by hand, or a
/// route removed from `#[process(commands(...))]`).
pub fn unknown_command<P: super::Process>(
    command: &SentCommand,
) -> BoxFuture<'_, Result<Result<(), String>, ProcessError>> {
    async move {
        Err(ProcessError::Command {
            process: P::NAME,
            command_type: command.command_type.clone(),
            target: command.target.clone(),
            detail: "no route for this command type: list it in `#[process(commands(...))]`".to_owned(),
        })
    }
    .boxed()
}
