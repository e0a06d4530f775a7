//! [`ProcessTest`]: given inputs, when one more, then these effects, without a store.
#![allow(clippy::panic, reason = "a test kit fails the test by panicking, like `assert!`")]

use std::marker::PhantomData;

use chrono::Utc;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::effects::Effects;
use super::error::ProcessError;
use super::record::{Reaction, SentCommand, Trigger};
use super::{CommandOf, DeadlineOf, Process};
use crate::envelope::{Envelope, Metadata};
use crate::event::Event;
use crate::store::Deadline;

/// A process instance in memory: feed it inputs, look at what each reaction asks for.
/// Inputs go through the same decoding, dispatch and effect rules as in a runner.
///
/// See the [module docs](crate::process) for an example.
pub struct ProcessTest<P> {
    /// The instance id: what the first event correlated to (`test` before).
    instance: String,
    state: P,
    pending: Vec<Deadline>,
    completed: bool,
    inputs: u64,
}

impl<P: Process> Default for ProcessTest<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Process> ProcessTest<P> {
    /// An instance in its `Default` state.
    pub fn new() -> Self {
        ProcessTest {
            instance: "test".to_owned(),
            state: P::default(),
            pending: Vec::new(),
            completed: false,
            inputs: 0,
        }
    }

    /// Reacts to `events` in order, ignoring their effects.
    pub fn given<E: Event>(mut self, events: impl IntoIterator<Item = E>) -> Self {
        for event in events {
            self.when(event);
        }
        self
    }

    /// Reacts to `event`. Panics (failing the test) if the process does not list it, it
    /// does not correlate, or the reaction fails; [`try_when`](Self::try_when) returns
    /// the error instead.
    pub fn when<E: Event>(&mut self, event: E) -> Reacted<P> {
        match self.try_when(event) {
            Ok(reacted) => reacted,
            Err(error) => panic!("{error}"),
        }
    }

    /// Reacts to `event`, returning why it could not.
    pub fn try_when<E: Event>(&mut self, event: E) -> Result<Reacted<P>, ProcessError> {
        self.inputs = self.inputs.saturating_add(1);
        let envelope = Envelope {
            event_id: Uuid::now_v7(),
            stream_id: "test-1".to_owned(),
            stream_version: self.inputs,
            global_position: self.inputs,
            recorded_at: Utc::now(),
            event_type: E::NAME.to_owned(),
            event_version: E::VERSION,
            payload: serde_json::to_value(&event).map_err(|source| self.json_error("the event", source))?.into(),
            metadata: Metadata::default(),
        };
        let trigger = Trigger::event(&envelope);
        match P::correlate(&envelope) {
            Ok(Some(instance)) => {
                if self.inputs == 1 {
                    self.instance = instance;
                }
                self.react(trigger)
            }
            Ok(None) => Err(ProcessError::Unhandled {
                process: P::NAME,
                instance: "test".to_owned(),
                trigger: format!("{}: list `{}` in `#[process(events(...))]`", trigger.describe(), E::NAME),
            }),
            Err(source) => {
                Err(ProcessError::Decode { process: P::NAME, trigger: trigger.describe(), source: Box::new(source) })
            }
        }
    }

    /// Reacts to deadline `deadline` coming due.
    pub fn when_deadline<D>(&mut self, deadline: D) -> Reacted<P>
    where
        D: DeadlineOf<P>,
    {
        let payload = serde_json::to_value(&deadline).unwrap_or_default();
        let id = self
            .pending
            .iter()
            .find(|pending| pending.deadline_type == <D as DeadlineOf<P>>::DEADLINE_TYPE && pending.payload == payload)
            .map_or_else(Uuid::now_v7, |pending| pending.id);
        let trigger = Trigger::Deadline {
            deadline_id: id,
            deadline_type: <D as DeadlineOf<P>>::DEADLINE_TYPE.to_owned(),
            due_at: Utc::now(),
            payload,
        };
        self.react_or_panic(trigger)
    }

    /// Reacts to the rejection of `command` (sent to `to`) with `reason`.
    pub fn when_rejected<C>(&mut self, to: &str, command: C, reason: &str) -> Reacted<P>
    where
        C: CommandOf<P>,
    {
        let sent = SentCommand {
            id: Uuid::now_v7(),
            command_type: <C as CommandOf<P>>::COMMAND_TYPE.to_owned(),
            target: to.to_owned(),
            payload: serde_json::to_value(&command).unwrap_or_default(),
        };
        self.react_or_panic(Trigger::rejected(&sent, reason))
    }

    /// The state after the inputs so far.
    pub fn state(&self) -> &P {
        &self.state
    }

    /// The deadlines set and neither fired nor cancelled.
    pub fn pending(&self) -> &[Deadline] {
        &self.pending
    }

    fn react_or_panic(&mut self, trigger: Trigger) -> Reacted<P> {
        match self.react(trigger) {
            Ok(reacted) => reacted,
            Err(error) => panic!("{error}"),
        }
    }

    fn react(&mut self, trigger: Trigger) -> Result<Reacted<P>, ProcessError> {
        if self.completed && !matches!(trigger, Trigger::Rejected { .. }) {
            return Ok(Reacted { reaction: None, _process: PhantomData });
        }
        let mut effects = Effects::<P>::new(&self.instance, Utc::now());
        self.state.react_to(&trigger, &mut effects)?;
        let stream = super::instance_stream::<P>(&self.instance);
        let reaction = effects.into_reaction(&self.instance, &stream, trigger, &self.state, &self.pending)?;
        reaction.update_pending(&mut self.pending);
        self.completed = reaction.completed;
        Ok(Reacted { reaction: Some(reaction), _process: PhantomData })
    }

    fn json_error(&self, what: &str, source: serde_json::Error) -> ProcessError {
        ProcessError::Json { process: P::NAME, instance: "test".to_owned(), what: what.to_owned(), source }
    }
}

/// What one reaction asked for (nothing, if the instance had completed before it).
pub struct Reacted<P> {
    reaction: Option<Reaction>,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process> Reacted<P> {
    /// The commands of type `C` it sent, with the aggregate id each went to.
    pub fn sent<C>(&self) -> Vec<(String, C)>
    where
        C: CommandOf<P> + DeserializeOwned,
    {
        self.commands()
            .iter()
            .filter(|c| c.command_type == <C as CommandOf<P>>::COMMAND_TYPE)
            .filter_map(|c| Some((c.target.clone(), C::deserialize(&c.payload).ok()?)))
            .collect()
    }

    /// The deadlines of type `D` it set.
    pub fn scheduled<D>(&self) -> Vec<D>
    where
        D: DeadlineOf<P> + DeserializeOwned,
    {
        self.reaction
            .iter()
            .flat_map(|r| &r.deadlines)
            .filter(|d| d.deadline_type == <D as DeadlineOf<P>>::DEADLINE_TYPE)
            .filter_map(|d| D::deserialize(&d.payload).ok())
            .collect()
    }

    /// Every command it sent, as recorded.
    pub fn commands(&self) -> &[SentCommand] {
        self.reaction.as_ref().map_or(&[], |r| &r.commands)
    }

    /// How many pending deadlines it cancelled.
    pub fn cancelled(&self) -> usize {
        self.reaction.as_ref().map_or(0, |r| r.cancelled.len())
    }

    /// Whether it completed the instance.
    pub fn completed(&self) -> bool {
        self.reaction.as_ref().is_some_and(|r| r.completed)
    }

    /// Whether it was ignored (the instance had completed).
    pub fn ignored(&self) -> bool {
        self.reaction.is_none()
    }

    /// The reaction as a runner would record it.
    pub fn reaction(&self) -> Option<&Reaction> {
        self.reaction.as_ref()
    }
}
