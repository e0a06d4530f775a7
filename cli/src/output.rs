//! Printing: one line per item, as text for people or JSON for scripts.

use std::io::Write;

use annals::store::{Checkpoint, ConsumerInfo, StreamInfo};
use annals::subscription::Parked;
use annals::Envelope;
use annals_postgres::feed::FeedBlocker;
use serde_json::json;

/// Where a command prints, and how.
pub(crate) struct Output<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> Output<W> {
    pub(crate) fn new(out: W, json: bool) -> Self {
        Output { out, json }
    }

    fn line(&mut self, text: &str) {
        // A closed pipe (`annals tail | head`) ends the output, not the command with a panic.
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// A line of JSON, or of text.
    fn either(&mut self, json: serde_json::Value, text: impl FnOnce() -> String) {
        let line = if self.json { json.to_string() } else { text() };
        self.line(&line);
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    /// One look of `consumers watch`: where the consumer stands, and how far it came.
    pub(crate) fn progress(&mut self, consumer: &ConsumerInfo, done: u64) {
        let value = json!({
            "consumer": consumer.name,
            "checkpoint": consumer.checkpoint,
            "behind": consumer.behind,
            "done": done,
        });
        self.either(value, || {
            format!("{}\t{}\t{} behind\t{done} done", consumer.name, consumer.checkpoint, consumer.behind)
        });
    }

    pub(crate) fn note(&mut self, text: &str) {
        let value = json!({ "note": text });
        self.either(value, || text.to_owned());
    }

    pub(crate) fn stream(&mut self, stream: &StreamInfo) {
        let value = json!(stream);
        self.either(value, || {
            format!("{}\tv{}\t{}", stream.stream_id, stream.version, stream.last_recorded_at.to_rfc3339())
        });
    }

    /// An event; with the feed's `checkpoint` when it comes from the feed.
    pub(crate) fn event(&mut self, checkpoint: Option<Checkpoint>, event: &Envelope) {
        // A payload as a JSON value, compact on one line: stored text may hold newlines and
        // tabs between tokens, and text serde_json cannot read (a number beyond `f64`) is
        // shown as a JSON string of itself rather than failing the command.
        let payload = match event.payload.value() {
            Ok(value) => value.clone(),
            Err(_) => serde_json::Value::from(event.payload.json_text().into_owned()),
        };
        let shown = Envelope { payload: payload.clone().into(), ..event.clone() };
        let mut value = serde_json::to_value(&shown).unwrap_or_default();
        if let (Some(checkpoint), Some(object)) = (checkpoint, value.as_object_mut()) {
            object.insert("checkpoint".into(), json!(checkpoint));
        }
        self.either(value, || {
            let at = checkpoint.map_or(String::new(), |c| format!("{c}\t"));
            let metadata = serde_json::to_string(&event.metadata).unwrap_or_default();
            format!(
                "{at}{}\tv{}\t#{}\t{}\tv{}\t{}\t{}\t{}\t{}",
                event.stream_id,
                event.stream_version,
                event.global_position,
                event.event_type,
                event.event_version,
                event.recorded_at.to_rfc3339(),
                event.event_id,
                payload,
                metadata,
            )
        });
    }

    pub(crate) fn blocker(&mut self, blocker: &FeedBlocker) {
        let value = json!({
            "pid": blocker.pid,
            "transaction_id": blocker.xid,
            "state": blocker.state,
            "age_seconds": blocker.age.map(|age| age.as_secs_f64()),
            "application_name": blocker.application_name,
            "query": blocker.query,
        });
        self.either(value, || blocker.to_string());
    }

    pub(crate) fn consumer(&mut self, consumer: &ConsumerInfo) {
        let value = json!(consumer);
        self.either(value, || {
            let updated = consumer.updated_at.map_or("-".to_owned(), |at| at.to_rfc3339());
            let held_by = consumer.held_by.as_deref().unwrap_or("-");
            if consumer.name.ends_with("@live") {
                // A blue/green live pointer: its checkpoint names the generation readers use.
                let generation = consumer.checkpoint.parts().1;
                return format!("{}\tlive generation {generation}\t-\t{updated}\t-", consumer.name);
            }
            format!("{}\t{}\t{} behind\t{}\t{}", consumer.name, consumer.checkpoint, consumer.behind, updated, held_by)
        });
    }

    pub(crate) fn parked(&mut self, parked: &Parked) {
        let value = json!(parked);
        let event = &parked.event.envelope;
        self.either(value, || {
            let damaged = parked.event.damage.as_ref().map_or(String::new(), |damage| format!(" [damaged: {damage}]"));
            format!(
                "{}\t{}\tv{}\t{}\t{}{damaged}\t{}",
                event.event_id,
                event.stream_id,
                event.stream_version,
                event.event_type,
                parked.parked_at.to_rfc3339(),
                parked.reason
            )
        });
    }
}
