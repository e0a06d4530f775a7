//! [`replay`]: runs an instance's recorded inputs through the current code and reports
//! where it decides differently from the recording.

use chrono::Utc;

use super::effects::Effects;
use super::error::ProcessError;
use super::runner::InstanceView;
use super::Process;
use crate::store::{Deadline, EventStore};

/// Where the current code decides differently from a recorded reaction.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayDifference {
    /// The version of the reaction in the instance stream.
    pub version: u64,
    /// What it reacted to.
    pub trigger: String,
    /// What differs: `state`, `commands`, `deadlines`, `cancelled` or `completed`.
    pub field: &'static str,
    /// As recorded.
    pub recorded: serde_json::Value,
    /// As the current code decides.
    pub replayed: serde_json::Value,
}

/// Replays instance `instance` of `P`: reacts to each recorded input again, from the
/// recorded state before it, and compares the outcome with the recording (deadlines by
/// type and value, not due time). An empty list means the current code decides as the
/// recorded one did: run it before deploying a change to a process.
///
/// ```
/// # async fn check<P: annals::process::Process>(store: annals_memory::MemoryStore) -> Result<(), annals::process::ProcessError> {
/// let differences = annals::process::replay::<P, _>(&store, "order-7").await?;
/// assert!(differences.is_empty(), "{differences:#?}");
/// # Ok(()) }
/// ```
pub async fn replay<P: Process, S: EventStore>(
    store: &S,
    instance: &str,
) -> Result<Vec<ReplayDifference>, ProcessError> {
    let recorded = InstanceView::<P>::load(store, instance).await?;
    let mut differences = Vec::new();
    let mut state = P::default();
    let mut pending: Vec<Deadline> = Vec::new();
    for (index, reaction) in recorded.reactions.iter().enumerate() {
        let version = u64::try_from(index).map_or(u64::MAX, |i| i.saturating_add(1));
        let mut effects = Effects::<P>::new(instance, Utc::now());
        state.react_to(&reaction.trigger, &mut effects)?;
        let replayed = effects.into_reaction(instance, &recorded.stream, reaction.trigger.clone(), &state, &pending)?;
        let mut differ = |field: &'static str, recorded: serde_json::Value, replayed: serde_json::Value| {
            if recorded != replayed {
                differences.push(ReplayDifference {
                    version,
                    trigger: reaction.trigger.describe(),
                    field,
                    recorded,
                    replayed,
                });
            }
        };
        differ("state", reaction.state.clone(), replayed.state.clone());
        differ("commands", json(&reaction.commands), json(&replayed.commands));
        let shape = |deadlines: &[Deadline]| -> serde_json::Value {
            deadlines.iter().map(|d| serde_json::json!({ "type": d.deadline_type, "payload": d.payload })).collect()
        };
        differ("deadlines", shape(&reaction.deadlines), shape(&replayed.deadlines));
        differ("cancelled", json(&reaction.cancelled), json(&replayed.cancelled));
        differ("completed", reaction.completed.into(), replayed.completed.into());
        // Go on from the recorded state, so that each difference shows where it starts.
        state = P::deserialize(&reaction.state).map_err(|source| ProcessError::Json {
            process: P::NAME,
            instance: instance.to_owned(),
            what: format!("the state recorded at version {version} of `{}`", recorded.stream),
            source,
        })?;
        reaction.update_pending(&mut pending);
    }
    Ok(differences)
}

/// A recorded value as JSON (what was read from JSON converts back).
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
