//! [`StreamQueue`]: commands on one stream through one repository take turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One waiting line per stream, shared by the clones of a repository: a command holds its
/// stream's turn from load to append, so commands of one process on a hot stream decide
/// one after the other instead of racing, conflicting and retrying. Streams without a
/// command in flight hold no entry.
#[derive(Clone, Default)]
pub(crate) struct StreamQueue {
    lines: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// A command's turn on its stream; the next command's turn starts when it is dropped
/// (also when the command's future is dropped).
pub(crate) struct Turn {
    queue: StreamQueue,
    stream: String,
    line: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl StreamQueue {
    /// Waits for `stream`'s turn.
    pub(crate) async fn turn(&self, stream: &str) -> Turn {
        let line = {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(lines.entry(stream.to_owned()).or_default())
        };
        let guard = Arc::clone(&line).lock_owned().await;
        Turn { queue: self.clone(), stream: stream.to_owned(), line, guard: Some(guard) }
    }

    /// How many streams have a line (commands waiting or running).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut lines = self.queue.lines.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's handle and ours: nobody else waits on this stream, so the line goes.
        if Arc::strong_count(&self.line) == 2 {
            lines.remove(&self.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_command_per_stream_at_a_time_and_no_line_left_behind() {
        let queue = StreamQueue::default();
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
