//! [`StreamQueue`]: commands on one stream through one repository take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::pipeline::Pipe;

/// One waiting line per stream, shared by the clones of a repository: a command holds its
/// stream's turn while it decides (and, unless its commands are pipelined, see
/// `pipeline.rs`, until its append is done), so commands of one process on a hot stream
/// decide one after the other instead of racing, conflicting and retrying. Streams without
/// a command in flight hold no entry.
pub(crate) struct StreamQueue<A> {
    lines: Arc<Mutex<HashMap<String, Held<A>>>>,
}

/// A line and how many hold it: commands waiting or deciding, and the task sending its
/// pipelined appends. It goes when the last lets go.
struct Held<A> {
    line: Arc<Line<A>>,
    holders: usize,
}

/// A stream's line: the turn commands take, and the appends of pipelined commands that
/// are in flight or waiting for it.
pub(crate) struct Line<A> {
    turn: Arc<tokio::sync::Mutex<()>>,
    pipe: Mutex<Pipe<A>>,
}

/// A command's turn on its stream; the next command's turn starts when it is dropped
/// (also when the command's future is dropped).
pub(crate) struct Turn<A> {
    queue: StreamQueue<A>,
    stream: String,
    line: Arc<Line<A>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<A> Clone for StreamQueue<A> {
    fn clone(&self) -> Self {
        StreamQueue { lines: Arc::clone(&self.lines) }
    }
}

impl<A> Default for StreamQueue<A> {
    fn default() -> Self {
        StreamQueue { lines: Arc::default() }
    }
}

impl<A> StreamQueue<A> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Held<A>>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `stream`'s turn.
    pub(crate) async fn turn(&self, stream: &str) -> Turn<A> {
        let line = self.hold(stream);
        let guard = Arc::clone(&line.turn).lock_owned().await;
        Turn { queue: self.clone(), stream: stream.to_owned(), line, guard: Some(guard) }
    }

    /// `stream`'s line, held until [`release`](Self::release): it stays (with its
    /// pipeline) while anyone holds it.
    pub(crate) fn hold(&self, stream: &str) -> Arc<Line<A>> {
        let mut lines = self.lock();
        let held = lines.entry(stream.to_owned()).or_insert_with(|| Held {
            line: Arc::new(Line { turn: Arc::default(), pipe: Mutex::new(Pipe::default()) }),
            holders: 0,
        });
        held.holders = held.holders.saturating_add(1);
        Arc::clone(&held.line)
    }

    /// Lets go of `stream`'s line; the last holder's letting go removes it.
    pub(crate) fn release(&self, stream: &str) {
        let mut lines = self.lock();
        if let Some(held) = lines.get_mut(stream) {
            held.holders = held.holders.saturating_sub(1);
            if held.holders == 0 {
                lines.remove(stream);
            }
        }
    }

    /// How many streams have a line (commands waiting or running).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl<A> Line<A> {
    /// The line's pipeline of appends.
    pub(crate) fn pipe(&self) -> MutexGuard<'_, Pipe<A>> {
        self.pipe.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<A> Turn<A> {
    /// The stream's line.
    pub(crate) fn line(&self) -> &Line<A> {
        &self.line
    }
}

impl<A> Drop for Turn<A> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.queue.release(&self.stream);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_command_per_stream_at_a_time_and_no_line_left_behind() {
        let queue = StreamQueue::<()>::default();
        let inside = Arc::new(AtomicU32::new(0));
        let most = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (queue, inside, most) = (queue.clone(), Arc::clone(&inside), Arc::clone(&most));
                tokio::spawn(async move {
                    let _turn = queue.turn("hot").await;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.is_ok());
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert_eq!(queue.len(), 0);
    }
}
