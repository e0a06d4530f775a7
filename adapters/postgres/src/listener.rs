//! The one LISTEN connection a store shares among all its subscribers in the process.
//!
//! [`wakeups`](annals::EventFeed::wakeups) used to open a `PgListener` on a pooled
//! connection per subscription and hold it forever: ten subscriptions took the whole
//! default pool. Now the first subscriber of a store opens one listener connection
//! *outside* the pool (a private one-connection pool on the store's connect options), a
//! task receives the notifications on it and fans each one out to every subscriber
//! through a [`watch`] channel (notifications that arrive while a subscriber is busy fold
//! into one wake-up). The task reconnects after a connection loss, waking every
//! subscriber (notifications may have been lost meanwhile; they read the feed again), and
//! ends, closing the connection, when the last subscriber is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use annals::store::BoxStream;
use annals::StoreError;
use futures::StreamExt;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::{watch, Mutex};

use crate::error::store_error;
use crate::PostgresStore;

/// How long the listener waits before listening again after its connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// The shortest time between two wake-ups, per subscriber: under a sustained stream of
/// appends, the notifications of this long fold into one wake-up, so that a crowd of
/// subscribers reads the feed at most this often instead of once per append (the first
/// wake-up after a quiet spell is immediate). Every wake-up costs one feed read per
/// subscriber, so the interval grows with the crowd: the subscribers of one process send
/// the server at most about 400 wake-up reads a second, whatever their number (measured:
/// 100 subscriptions of one category each kept appends at 68% of their rate alone with
/// 2.5 ms, 52–63% with 1 ms).
const WAKE_INTERVAL_PER_SUBSCRIBER: Duration = Duration::from_micros(2500);

/// The interval's bounds: 10 ms for a few subscribers; at most 250 ms, however many
/// (subscribers also poll).
const MIN_WAKE_INTERVAL: Duration = Duration::from_millis(10);
const MAX_WAKE_INTERVAL: Duration = Duration::from_millis(250);

/// The shortest time between two wake-ups of `subscribers` subscribers.
fn wake_interval(subscribers: usize) -> Duration {
    let subscribers = u32::try_from(subscribers).unwrap_or(u32::MAX);
    WAKE_INTERVAL_PER_SUBSCRIBER.saturating_mul(subscribers).clamp(MIN_WAKE_INTERVAL, MAX_WAKE_INTERVAL)
}

/// The slot of a store's shared listener: the sender of its running task, if any (weak:
/// the task owns it, and a task that ended leaves nothing behind).
#[derive(Default)]
pub(crate) struct SharedListener {
    slot: Arc<Mutex<Weak<watch::Sender<u64>>>>,
    /// Notifications received (and reconnections, which may have lost some), counted as
    /// they arrive, before they fold into wake-ups: how fresh a shared feed read must be
    /// (`feed_window.rs`).
    notifications: Arc<AtomicU64>,
    /// [`notifications`](Self::notifications) as it was at the last wake-up: what every
    /// subscriber woken so far may know of.
    woken_at: Arc<AtomicU64>,
}

impl SharedListener {
    /// How many notifications (and reconnections) the listener has received.
    pub(crate) fn notifications(&self) -> u64 {
        self.notifications.load(Ordering::SeqCst)
    }

    /// How many notifications the listener had received at its last wake-up.
    pub(crate) fn woken_at(&self) -> u64 {
        self.woken_at.load(Ordering::SeqCst)
    }

    /// How many subscribers follow the listener now (0 while one is subscribing).
    pub(crate) fn followers(&self) -> usize {
        self.slot.try_lock().ok().and_then(|slot| slot.upgrade()).map_or(0, |sender| sender.receiver_count())
    }

    /// A wake-up stream on the store's shared listener, starting the listener if none is
    /// running. Fails only when a new listener cannot connect and LISTEN.
    pub(crate) async fn subscribe(&self, store: &PostgresStore) -> Result<BoxStream<'static, ()>, StoreError> {
        let mut slot = self.slot.lock().await;
        let receiver = match slot.upgrade() {
            Some(sender) => sender.subscribe(),
            None => {
                let listener = listen(store).await?;
                let (sender, receiver) = watch::channel(0u64);
                let sender = Arc::new(sender);
                *slot = Arc::downgrade(&sender);
                tokio::spawn(fan_out(
                    listener,
                    sender,
                    Arc::clone(&self.slot),
                    Arc::clone(&self.notifications),
                    Arc::clone(&self.woken_at),
                ));
                receiver
            }
        };
        drop(slot);
        Ok(futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.changed().await.ok()?;
            receiver.borrow_and_update();
            Some(((), receiver))
        })
        .boxed())
    }
}

/// A listener on the store's channel, on a connection of its own.
async fn listen(store: &PostgresStore) -> Result<PgListener, StoreError> {
    let channel = &store.sql().channel;
    let operation = || format!("listening for appended events on channel `{channel}`");
    let options = (*store.pool().connect_options()).clone();
    let pool =
        PgPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(10)).connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool).await.map_err(|e| store_error(operation(), e))?;
    listener.listen(channel).await.map_err(|e| store_error(operation(), e))?;
    Ok(listener)
}

/// Receives notifications and wakes every subscriber, until none is left.
async fn fan_out(
    mut listener: PgListener,
    sender: Arc<watch::Sender<u64>>,
    slot: Arc<Mutex<Weak<watch::Sender<u64>>>>,
    notifications: Arc<AtomicU64>,
    woken_at: Arc<AtomicU64>,
) {
    let wake = |sender: &watch::Sender<u64>| {
        woken_at.store(notifications.load(Ordering::SeqCst), Ordering::SeqCst);
        sender.send_modify(|n| *n = n.wrapping_add(1));
    };
    let count = || notifications.fetch_add(1, Ordering::SeqCst);
    let mut last_wake = tokio::time::Instant::now();
    loop {
        tokio::select! {
            received = listener.try_recv() => match received {
                Ok(Some(_)) => {
                    count();
                    tokio::time::sleep_until(last_wake + wake_interval(sender.receiver_count())).await;
                    // Fold the notifications that arrived meanwhile into this wake-up.
                    while listener.next_buffered().is_some() {
                        count();
                    }
                    wake(&sender);
                    last_wake = tokio::time::Instant::now();
                }
                // The connection was lost; the next `try_recv` reconnects and listens
                // again. Notifications sent meanwhile are lost: wake everyone to look.
                Ok(None) => {
                    count();
                    wake(&sender);
                }
                Err(_) => {
                    count();
                    wake(&sender);
                    tokio::time::sleep(RELISTEN_DELAY).await;
                }
            },
            () = sender.closed() => {
                // No subscriber left, unless one is subscribing right now (under the lock).
                let mut slot = slot.lock().await;
                if sender.receiver_count() == 0 {
                    *slot = Weak::new();
                    return;
                }
            }
        }
    }
}
