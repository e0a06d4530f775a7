//! Subscriptions over any `EventFeed`: catch-up, live following, filters, failing
//! handlers and restarts. Each adapter's test file includes this module and calls every
//! function with a fresh store.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use annals::prelude::*;
use annals::subscription::{
    EventFeed, Filter, InMemoryProjection, Subscription, SubscriptionError, SubscriptionOptions,
};
use annals::{BoxError, NewEvent, On};
use serde_json::json;
use shopping_cart::{CheckedOut, ItemAdded};

/// Records every event it sees; can be told to fail on one SKU a number of times.
#[derive(Projection, Default)]
#[projection(name = "recorder", events(ItemAdded, CheckedOut))]
pub struct Recorder {
    /// (global position, stream, sku) of every handled event.
    pub seen: Vec<(u64, String, String)>,
    pub fail_on_sku: Option<(String, Arc<AtomicU32>)>,
}

impl On<ItemAdded> for Recorder {
    async fn on(&mut self, e: ItemAdded, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        if let Some((sku, failures_left)) = &self.fail_on_sku {
            if *sku == e.sku && failures_left.load(Ordering::SeqCst) > 0 {
                failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(format!("refusing {sku} for now").into());
            }
        }
        self.seen.push((env.global_position, env.stream_id.clone(), e.sku));
        Ok(())
    }
}

impl On<CheckedOut> for Recorder {
    async fn on(&mut self, _: CheckedOut, env: &Envelope, _: &mut ()) -> Result<(), BoxError> {
        self.seen.push((env.global_position, env.stream_id.clone(), "<checkout>".into()));
        Ok(())
    }
}

fn added(sku: &str) -> NewEvent {
    NewEvent::new("cart.item_added", 1, json!({"sku": sku, "qty": 1, "unit_price_cents": 100}))
}

fn removed(sku: &str) -> NewEvent {
    NewEvent::new("cart.item_removed", 1, json!({"sku": sku, "qty": 1}))
}

fn checked_out() -> NewEvent {
    NewEvent::new("cart.checked_out", 1, json!({"total_cents": 100}))
}

fn fast() -> SubscriptionOptions {
    SubscriptionOptions {
        batch_size: 7,
        poll_interval: Duration::from_millis(20),
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        ..SubscriptionOptions::default()
    }
}

fn skus(p: &Recorder) -> Vec<String> {
    p.seen.iter().map(|(_, _, sku)| sku.clone()).collect()
}

/// Waits (bounded) until the projection has seen `n` events.
async fn until_seen(view: &InMemoryProjection<Recorder>, n: usize) {
    for _ in 0..1000 {
        if view.read().await.seen.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the projection saw {} events, expected {n}", view.read().await.seen.len());
}

/// Catch-up delivers each matching event once, in order, and skips other event types.
pub async fn catch_up_delivers_matching_events_once_in_order<S: EventFeed>(store: S) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![added("a"), removed("a"), added("b")]).await.unwrap();
    store.append("cart-2", ExpectedVersion::NoStream, vec![added("c"), checked_out()]).await.unwrap();
    for i in 0..30 {
        store.append("cart-3", ExpectedVersion::Any, vec![added(&format!("x{i}"))]).await.unwrap();
    }
    let view = InMemoryProjection::new(Recorder::default());
    let mut subscription =
        Subscription::new(store.clone(), view.clone()).filter(Filter::for_projection::<Recorder>()).options(fast());
    subscription.catch_up().await.unwrap();
    let p = view.read().await;
    assert_eq!(p.seen.len(), 34, "every item_added and checked_out, no item_removed");
    assert_eq!(&skus(&p)[..4], ["a", "b", "c", "<checkout>"]);
    let positions: Vec<u64> = p.seen.iter().map(|(position, _, _)| *position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in global order: {positions:?}");
    drop(p);
    // Catching up again applies nothing twice.
    subscription.catch_up().await.unwrap();
    assert_eq!(view.read().await.seen.len(), 34);
}

/// A category filter keeps one aggregate type's streams.
pub async fn a_stream_filter_keeps_only_those_streams<S: EventFeed>(store: S) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![added("a")]).await.unwrap();
    store.append("wishlist-1", ExpectedVersion::NoStream, vec![added("w")]).await.unwrap();
    store.append("cartography-1", ExpectedVersion::NoStream, vec![added("m")]).await.unwrap();
    store.append("cart-2", ExpectedVersion::NoStream, vec![added("b")]).await.unwrap();
    let view = InMemoryProjection::new(Recorder::default());
    let filter = Filter::for_projection::<Recorder>().category("cart");
    Subscription::new(store.clone(), view.clone()).filter(filter).options(fast()).catch_up().await.unwrap();
    assert_eq!(skus(&*view.read().await), ["a", "b"]);
    let one = InMemoryProjection::new(Recorder::default());
    Subscription::new(store.clone(), one.clone()).filter(Filter::all().stream("cart-2")).catch_up().await.unwrap();
    assert_eq!(skus(&*one.read().await), ["b"]);
}

/// After catching up, a running subscription follows events appended concurrently by 8
/// writers, and sees each exactly once.
pub async fn a_running_subscription_follows_concurrent_writers<S: EventFeed>(store: S) {
    store.append("cart-early", ExpectedVersion::NoStream, vec![added("early")]).await.unwrap();
    let view = InMemoryProjection::new(Recorder::default());
    let mut subscription =
        Subscription::new(store.clone(), view.clone()).filter(Filter::for_projection::<Recorder>()).options(fast());
    let runner = tokio::spawn(async move { subscription.run().await });
    let mut writers = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let batch = vec![added(&format!("w{w}-{i}")), removed("noise")];
                store.append(&format!("cart-w{w}"), ExpectedVersion::Any, batch).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    until_seen(&view, 801).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // anything extra would show up now
    runner.abort();
    let p = view.read().await;
    let unique: BTreeSet<&String> = p.seen.iter().map(|(_, _, s)| s).collect();
    assert_eq!((p.seen.len(), unique.len()), (801, 801), "every event exactly once");
    let positions: Vec<u64> = p.seen.iter().map(|(position, _, _)| *position).collect();
    let mut sorted = positions.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), positions.len());
}

/// A handler that fails a few times is retried with back-off and nothing is applied twice.
pub async fn a_failing_handler_is_retried_without_double_applying<S: EventFeed>(store: S) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![added("a"), added("flaky"), added("c")]).await.unwrap();
    let failures = Arc::new(AtomicU32::new(2));
    let view = InMemoryProjection::new(Recorder {
        fail_on_sku: Some(("flaky".into(), failures.clone())),
        ..Default::default()
    });
    Subscription::new(store.clone(), view.clone()).options(fast()).catch_up().await.unwrap();
    assert_eq!(skus(&*view.read().await), ["a", "flaky", "c"]);
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}

/// A handler that keeps failing stops the subscription with an error naming the event;
/// once the cause is fixed, a restart resumes at that event and applies everything once.
pub async fn a_handler_that_keeps_failing_stops_visibly_and_resumes_after_a_fix<S: EventFeed>(store: S) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![added("a"), added("broken"), added("c")]).await.unwrap();
    let failures = Arc::new(AtomicU32::new(u32::MAX));
    let view = InMemoryProjection::new(Recorder {
        fail_on_sku: Some(("broken".into(), failures.clone())),
        ..Default::default()
    });
    let options = SubscriptionOptions { max_attempts: 3, ..fast() };
    let error = Subscription::new(store.clone(), view.clone()).options(options).catch_up().await.unwrap_err();
    match &error {
        SubscriptionError::Sink { name, attempts, .. } => assert_eq!((name.as_str(), *attempts), ("recorder", 3)),
        other => panic!("expected the sink to stop the subscription, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("stream `cart-1` version 2") && message.contains("cart.item_added"), "{message}");
    assert_eq!(skus(&*view.read().await), ["a"], "nothing after the failed event is applied");

    failures.store(0, Ordering::SeqCst); // the fix
    Subscription::new(store.clone(), view.clone()).options(options).catch_up().await.unwrap();
    assert_eq!(skus(&*view.read().await), ["a", "broken", "c"]);
}

/// A new subscription over the same in-memory projection resumes from its checkpoint.
pub async fn a_restarted_subscription_resumes_from_the_checkpoint<S: EventFeed>(store: S) {
    store.append("cart-1", ExpectedVersion::NoStream, vec![added("a"), added("b")]).await.unwrap();
    let view = InMemoryProjection::new(Recorder::default());
    let reached = Subscription::new(store.clone(), view.clone()).catch_up().await.unwrap();
    assert_eq!(view.checkpoint().await, reached);
    store.append("cart-1", ExpectedVersion::Exact(2), vec![added("c")]).await.unwrap();
    Subscription::new(store.clone(), view.clone()).catch_up().await.unwrap();
    assert_eq!(skus(&*view.read().await), ["a", "b", "c"]);
}

/// Rebuilding while a subscription runs and writers append: the rebuilt model ends up
/// with every event exactly once, and the running subscription carries on after the swap.
pub async fn a_rebuild_while_running_loses_and_repeats_nothing<S: EventFeed>(store: S) {
    for i in 0..200 {
        store.append("cart-r", ExpectedVersion::Any, vec![added(&format!("before-{i}"))]).await.unwrap();
    }
    let view = InMemoryProjection::new(Recorder::default());
    let mut subscription = Subscription::new(store.clone(), view.clone()).options(fast());
    let runner = tokio::spawn(async move { subscription.run().await });
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                store.append("cart-w", ExpectedVersion::Any, vec![added(&format!("during-{i}"))]).await.unwrap();
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    until_seen(&view, 100).await;
    view.rebuild(store.clone(), Recorder::default()).await.unwrap();
    writer.await.unwrap();
    until_seen(&view, 500).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    runner.abort();
    let p = view.read().await;
    let unique: BTreeSet<&String> = p.seen.iter().map(|(_, _, s)| s).collect();
    assert_eq!((p.seen.len(), unique.len()), (500, 500), "every event exactly once after the rebuild");
    let positions: Vec<u64> = p.seen.iter().map(|(position, _, _)| *position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "still in order after the swap");
}
