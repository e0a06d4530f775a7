//! Feed reads shared by the subscribers of one store: one read of the feed serves them all.
//!
//! Each subscriber woken by an append reads the feed after its own checkpoint with its
//! own filter: with a hundred subscribers, a hundred feed queries per wake-up, which
//! took a quarter of the writers' rate on a two-core machine. Subscribers that follow
//! the head all want the same few new events, so the store keeps a **window** of the
//! unfiltered feed, the events with checkpoints in `(start, end]`, as one more reader
//! would see them reading from `start`: a refresh reads the feed (all events) after
//! `end`, exactly as a subscription reads it after its checkpoint. A reader whose
//! checkpoint is in the window gets the window's events after it that pass its filter,
//! and `end` as its next checkpoint: what reading the feed itself at the refresh would
//! have given. Readers behind the window read the feed themselves.
//!
//! **Fresh enough.** A window answers a read only if its last refresh began after
//! everything the reader may have been woken for: after the listener received every
//! notification folded into its latest wake-up (a notification received since then
//! wakes the subscribers again, and their next read needs a newer refresh), after the
//! last [`settle`](annals::EventFeed::settle) (so a catch-up includes everything
//! committed before it), and at most [`MAX_AGE`] before the read (for writers whose
//! appends notify nobody, which subscribers find by polling). Otherwise the reader
//! refreshes the window, one refresh at a time: readers that arrive during a refresh
//! wait for it, and are usually served by it. So a crowd woken together costs one or
//! two feed queries instead of one each.
//!
//! A window's answer is always a consistent one (gap-free, in commit order, as of its
//! refresh); it may lag the newest commits by up to [`MAX_AGE`] or one wake-up, never
//! more: call `settle` first to read everything committed before a point.
//!
//! Only stores with [`MIN_FOLLOWERS`] or more subscribers use the window: for one
//! subscriber with a narrow filter, its own filtered query reads less than the
//! unfiltered refresh.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use annals::store::{Checkpoint, FeedBatch, FeedEvent, Filter};

/// Subscribers needed for the window to pay.
pub(crate) const MIN_FOLLOWERS: usize = 2;

/// The most events the window keeps; older ones fall out of its front.
const MAX_EVENTS: usize = 10_000;

/// The most events one refresh reads.
pub(crate) const REFRESH_LIMIT: usize = 1_000;

/// The oldest a window may be to answer a read: bounds how late a reader polling for
/// appends that notify nobody sees them.
const MAX_AGE: Duration = Duration::from_millis(50);

/// What a read may already know of, as counters: a window answers it only if its last
/// refresh began after all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Notifications the listener has received.
    notifications: u64,
    /// `settle` calls that completed.
    settles: u64,
}

impl Stamp {
    fn covers(self, need: Stamp) -> bool {
        self.notifications >= need.notifications && self.settles >= need.settles
    }
}

/// The events of the feed with checkpoints in `(start, end]`, all of them, in order.
struct Window {
    start: Checkpoint,
    end: Checkpoint,
    /// Whether the last refresh read to the head of the feed (it was not cut at
    /// [`REFRESH_LIMIT`]).
    complete: bool,
    events: VecDeque<FeedEvent>,
    /// What the last refresh began after, and when.
    stamp: Stamp,
    refreshed_at: Instant,
}

/// A store's shared window and the counters that say how fresh it is.
#[derive(Default)]
pub(crate) struct FeedWindow {
    window: Mutex<Option<Window>>,
    /// Refreshes take turns: a reader that waited here is often served by the refresh it
    /// waited for.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    settles: AtomicU64,
}

/// Where a read that the window could not answer goes.
pub(crate) enum Refresh {
    /// Read the feed (every event) after this checkpoint, then [`extend`](FeedWindow::extend).
    After(Checkpoint),
    /// The reader is outside the window (behind it, or ahead of a window left behind), or
    /// there is none: it reads the feed itself.
    Alone,
}

impl FeedWindow {
    /// A `settle` completed.
    pub(crate) fn settled(&self) {
        self.settles.fetch_add(1, Ordering::SeqCst);
    }

    /// The counters now, with `notifications` from the listener: for a read, those
    /// folded into its latest wake-up; for a refresh, those received.
    pub(crate) fn stamp(&self, notifications: u64) -> Stamp {
        Stamp { notifications, settles: self.settles.load(Ordering::SeqCst) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Window>> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer to a read after `after` that began at `need`, if the window holds it
    /// and is fresh enough.
    pub(crate) fn serve(&self, need: Stamp, after: Checkpoint, filter: &Filter, limit: usize) -> Option<FeedBatch> {
        let guard = self.lock();
        let window = guard.as_ref()?;
        let fresh = window.stamp.covers(need) && window.refreshed_at.elapsed() <= MAX_AGE;
        // A reader at the end of a window cut short needs the next refresh, not an
        // empty answer saying "more".
        let inside = window.start <= after && (after < window.end || (after == window.end && window.complete));
        if !fresh || !inside {
            return None;
        }
        let from = window.events.partition_point(|event| event.checkpoint <= after);
        let mut events = Vec::new();
        for event in window.events.range(from..) {
            if filter.matches(&event.envelope.stream_id, &event.envelope.event_type) {
                events.push(event.clone());
                if events.len() >= limit.max(1) {
                    return Some(FeedBatch { next: event.checkpoint, events, more: true });
                }
            }
        }
        Some(FeedBatch { events, next: window.end, more: !window.complete })
    }

    /// What a read after `after` the window could not answer does.
    pub(crate) fn refresh_for(&self, after: Checkpoint) -> Refresh {
        match self.lock().as_ref() {
            Some(window) if window.start <= after && after <= window.end => Refresh::After(window.end),
            _ => Refresh::Alone,
        }
    }

    /// Adds a refresh's read of every event after the window's end (`batch`, begun at
    /// `stamp` and `began`).
    pub(crate) fn extend(&self, from: Checkpoint, batch: FeedBatch, stamp: Stamp, began: Instant) {
        let mut guard = self.lock();
        let Some(window) = guard.as_mut() else { return };
        if window.end != from {
            return; // the window moved meanwhile (reset): this read does not continue it
        }
        window.events.extend(batch.events);
        window.end = batch.next.max(window.end);
        window.complete = !batch.more;
        window.stamp = stamp;
        window.refreshed_at = began;
        while window.events.len() > MAX_EVENTS {
            if let Some(first) = window.events.pop_front() {
                window.start = first.checkpoint;
            }
        }
    }

    /// After a reader's own read that reached the head of the feed (`more` false) at
    /// `next`: starts a window there, empty, if there is none or the one there is ends
    /// before it (left behind while nobody read).
    pub(crate) fn start_at(&self, next: Checkpoint, stamp: Stamp, began: Instant) {
        let mut guard = self.lock();
        if guard.as_ref().is_none_or(|window| window.end < next) {
            *guard = Some(Window {
                start: next,
                end: next,
                complete: true,
                events: VecDeque::new(),
                stamp,
                refreshed_at: began,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use annals::{Envelope, Metadata};

    use super::*;

    fn event(position: u64, stream: &str) -> FeedEvent {
        FeedEvent::new(
            Checkpoint::from_parts(0, position),
            Envelope {
                event_id: uuid::Uuid::from_u64_pair(0, position),
                stream_id: stream.into(),
                stream_version: 1,
                global_position: position,
                recorded_at: chrono::Utc::now(),
                event_type: "e".into(),
                event_version: 1,
                payload: annals::Payload::default(),
                metadata: Metadata::default(),
            },
        )
    }

    fn at(position: u64) -> Checkpoint {
        Checkpoint::from_parts(0, position)
    }

    #[test]
    fn a_window_answers_only_fresh_reads_inside_it() {
        let window = FeedWindow::default();
        let stamp = window.stamp(0);
        assert!(window.serve(stamp, at(5), &Filter::all(), 10).is_none(), "no window yet");
        window.start_at(at(5), stamp, Instant::now());
        let batch =
            FeedBatch { events: vec![event(6, "a-1"), event(7, "b-1"), event(9, "a-2")], next: at(9), more: false };
        window.extend(at(5), batch, stamp, Instant::now());

        let categories = window.serve(stamp, at(6), &Filter::all().category("a"), 10).unwrap();
        assert_eq!(categories.events.iter().map(|e| e.envelope.global_position).collect::<Vec<_>>(), [9]);
        assert_eq!((categories.next, categories.more), (at(9), false));
        let limited = window.serve(stamp, at(5), &Filter::all(), 2).unwrap();
        assert_eq!((limited.events.len(), limited.next, limited.more), (2, at(7), true));
        assert!(window.serve(stamp, at(4), &Filter::all(), 10).is_none(), "behind the window");
        assert!(matches!(window.refresh_for(at(4)), Refresh::Alone));
        assert!(matches!(window.refresh_for(at(9)), Refresh::After(end) if end == at(9)));
        assert!(matches!(window.refresh_for(at(12)), Refresh::Alone), "ahead of the window");

        // A wake-up for a notification, or a settle, since the refresh: not fresh enough.
        assert!(window.serve(window.stamp(1), at(6), &Filter::all(), 10).is_none());
        window.settled();
        assert!(window.serve(window.stamp(0), at(6), &Filter::all(), 10).is_none());
        assert!(window.serve(stamp, at(6), &Filter::all(), 10).is_some(), "a read that knows of neither");
    }

    #[test]
    fn a_window_cut_short_sends_readers_at_its_end_to_refresh_and_keeps_its_size() {
        let window = FeedWindow::default();
        let stamp = window.stamp(0);
        window.start_at(at(0), stamp, Instant::now());
        let events: Vec<_> = (1..=MAX_EVENTS as u64 + 5).map(|p| event(p, "a-1")).collect();
        let end = at(MAX_EVENTS as u64 + 5);
        window.extend(at(0), FeedBatch { events, next: end, more: true }, stamp, Instant::now());
        assert!(window.serve(stamp, end, &Filter::all(), 10).is_none(), "more may follow: refresh");
        assert!(window.serve(stamp, at(3), &Filter::all(), 10).is_none(), "fell out of the front");
        let batch = window.serve(stamp, at(10), &Filter::all(), 10).unwrap();
        assert_eq!((batch.events[0].envelope.global_position, batch.more), (11, true));
        // A refresh that does not continue the window (it moved) changes nothing.
        window.extend(
            at(3),
            FeedBatch { events: vec![event(99_999, "x-1")], next: at(99_999), more: false },
            stamp,
            Instant::now(),
        );
        assert!(window.serve(stamp, end, &Filter::all(), 10).is_none());
    }
}
