//! [`Effects`]: what a reaction asks for, collected while it runs and recorded with it.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::error::ProcessError;
use super::record::{derived_id, Reaction, SentCommand, Trigger};
use super::{CommandOf, DeadlineOf, Process};
use crate::store::Deadline;

/// What a reaction asks for: commands to send, deadlines to set or cancel, completion.
/// Nothing happens while the reaction runs; the runner records the reaction with these
/// effects, then carries them out.
pub struct Effects<P> {
    instance: String,
    now: DateTime<Utc>,
    commands: Vec<Asked>,
    deadlines: Vec<(Asked, DateTime<Utc>)>,
    cancel: Vec<&'static str>,
    complete: bool,
    /// The first problem met (a value that does not serialize, a time out of range).
    problem: Option<Problem>,
    _process: PhantomData<fn() -> P>,
}

/// A command or deadline as asked for.
struct Asked {
    type_name: &'static str,
    target: String,
    payload: serde_json::Value,
}

enum Problem {
    Json { what: String, source: serde_json::Error },
    Effect(String),
}

impl<P: Process> Effects<P> {
    /// Effects of a reaction of `instance` happening at `now` (deadlines count from it).
    pub(crate) fn new(instance: &str, now: DateTime<Utc>) -> Self {
        Effects {
            instance: instance.to_owned(),
            now,
            commands: Vec::new(),
            deadlines: Vec::new(),
            cancel: Vec::new(),
            complete: false,
            problem: None,
            _process: PhantomData,
        }
    }

    /// The instance reacting: its correlation id (what `correlate_by` or `correlate_with`
    /// gave).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sends `command` to aggregate `to` (of the aggregate type `#[process(commands(...))]`
    /// routes the command to), once the reaction is recorded.
    pub fn send<C>(&mut self, to: impl Into<String>, command: C)
    where
        C: CommandOf<P>,
    {
        let type_name = <C as CommandOf<P>>::COMMAND_TYPE;
        if let Some(payload) = self.json(&command, || format!("command `{type_name}`")) {
            self.commands.push(Asked { type_name, target: to.into(), payload });
        }
    }

    /// Sets a deadline: `deadline` comes back as an input after `after`, unless the
    /// instance cancels it or completes first.
    pub fn deadline<D>(&mut self, after: Duration, deadline: D)
    where
        D: DeadlineOf<P>,
    {
        let due = chrono::Duration::from_std(after).ok().and_then(|after| self.now.checked_add_signed(after));
        match due {
            Some(due) => self.deadline_at(due, deadline),
            None => self.problem(Problem::Effect(format!(
                "deadline `{}` after {after:?} is beyond the calendar; use a shorter duration",
                <D as DeadlineOf<P>>::DEADLINE_TYPE
            ))),
        }
    }

    /// Sets a deadline at a point in time.
    pub fn deadline_at<D>(&mut self, due: DateTime<Utc>, deadline: D)
    where
        D: DeadlineOf<P>,
    {
        let type_name = <D as DeadlineOf<P>>::DEADLINE_TYPE;
        if let Some(payload) = self.json(&deadline, || format!("deadline `{type_name}`")) {
            self.deadlines.push((Asked { type_name, target: String::new(), payload }, due));
        }
    }

    /// Cancels the instance's pending deadlines of type `D` (also those this reaction sets
    /// before calling it).
    pub fn cancel<D>(&mut self)
    where
        D: DeadlineOf<P>,
    {
        let type_name = <D as DeadlineOf<P>>::DEADLINE_TYPE;
        self.deadlines.retain(|(asked, _)| asked.type_name != type_name);
        self.cancel.push(type_name);
    }

    /// Completes the instance: its pending deadlines are cancelled and it ignores later
    /// inputs. Commands and deadlines asked for before still count.
    pub fn complete(&mut self) {
        self.complete = true;
    }

    fn json<T: Serialize>(&mut self, value: &T, what: impl FnOnce() -> String) -> Option<serde_json::Value> {
        match serde_json::to_value(value) {
            Ok(json) => Some(json),
            Err(source) => {
                self.problem(Problem::Json { what: what(), source });
                None
            }
        }
    }

    fn problem(&mut self, problem: Problem) {
        self.problem.get_or_insert(problem);
    }

    /// The reaction to record: `state` after reacting to `trigger`, with these effects.
    /// `pending` are the instance's pending deadlines before the reaction.
    pub(crate) fn into_reaction(
        self,
        instance: &str,
        stream: &str,
        trigger: Trigger,
        state: &P,
        pending: &[Deadline],
    ) -> Result<Reaction, ProcessError> {
        match self.problem {
            Some(Problem::Json { what, source }) => {
                return Err(ProcessError::Json { process: P::NAME, instance: instance.to_owned(), what, source });
            }
            Some(Problem::Effect(detail)) => {
                return Err(ProcessError::Effect { process: P::NAME, instance: instance.to_owned(), detail });
            }
            None => {}
        }
        let state = serde_json::to_value(state).map_err(|source| ProcessError::Json {
            process: P::NAME,
            instance: instance.to_owned(),
            what: "the state".to_owned(),
            source,
        })?;
        let trigger_id = trigger.id().to_string();
        let id = |kind: &str, index: usize| derived_id(&[stream, &trigger_id, kind, &index.to_string()]);
        let commands = self
            .commands
            .into_iter()
            .enumerate()
            .map(|(index, asked)| SentCommand {
                id: id("command", index),
                command_type: asked.type_name.to_owned(),
                target: asked.target,
                payload: asked.payload,
            })
            .collect();
        let cancelled: Vec<Uuid> = pending
            .iter()
            .filter(|deadline| self.complete || self.cancel.contains(&deadline.deadline_type.as_str()))
            .map(|deadline| deadline.id)
            .collect();
        let deadlines = if self.complete {
            Vec::new()
        } else {
            self.deadlines
                .into_iter()
                .enumerate()
                .map(|(index, (asked, due_at))| Deadline {
                    id: id("deadline", index),
                    process: P::NAME.to_owned(),
                    instance: instance.to_owned(),
                    due_at,
                    deadline_type: asked.type_name.to_owned(),
                    payload: asked.payload,
                })
                .collect()
        };
        Ok(Reaction { trigger, state, commands, deadlines, cancelled, completed: self.complete })
    }
}
