//! The blue/green suite: a second generation of a read model is built in storage of its
//! own while readers poll the live one, and readers never see an empty, half-built or
//! mixed model ([`BlueGreen`]). The read model's storage is SQL of each store, so an
//! adapter's test gives a [`Fixture`]: a projection of units per cart whose generation
//! `g` writes its own table, which `publish` puts behind one view, and the reads of that
//! view. (annals-postgres and annals-sqlite run it from their `tests/blue_green.rs`.)

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::envelope::NewEvent;
use crate::projection::BoxError;
use crate::store::{CheckpointStore, EventFeed, EventStore, ExpectedVersion, Inspect};
use crate::subscription::{BlueGreen, ExactlyOnce, RebuildError, Rebuildable, Subscription, SubscriptionOptions};

/// Carts written by the suite.
pub const CARTS: u32 = 30;
/// `cart.item_added` events per cart (quantities 1 to 20).
pub const PER_CART: u32 = 20;

/// What a store's blue/green test provides.
pub trait Fixture: Clone + Send + Sync + 'static {
    /// The store.
    type Store: EventStore + EventFeed + CheckpointStore + Inspect;
    /// Units per cart from `cart.item_added` (`qty`), under [`Projection::NAME`](crate::Projection::NAME)
    /// `balances`; generation `g` keeps them in a table of its own with a `generation`
    /// column, which `publish` puts behind the view the readers read.
    type Projection: Rebuildable<Context = <Self::Store as CheckpointStore>::Connection> + Sync;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// Generation `generation`'s projection, its table created; each event waits `delay`.
    fn build(
        &self,
        generation: u64,
        delay: Duration,
    ) -> impl Future<Output = Result<Self::Projection, BoxError>> + Send;

    /// One read of the view: rows, total units, lowest and highest generation.
    fn read_view(&self) -> impl Future<Output = (i64, i64, i64, i64)> + Send;

    /// The rows of generation `generation`'s own table; `None` when it does not exist.
    fn rows_of(&self, generation: u64) -> impl Future<Output = Option<i64>> + Send;
}

fn added(qty: u32) -> NewEvent {
    NewEvent::new("cart.item_added", 1, serde_json::json!({"sku": "tea", "qty": qty, "unit_price_cents": 100}))
}

/// [`CARTS`] carts of [`PER_CART`] events; returns the units written.
async fn write_carts<F: Fixture>(fixture: &F) -> i64 {
    let mut units = 0;
    for c in 0..CARTS {
        let events = (1..=PER_CART).map(added).collect();
        fixture.store().append(&format!("cart-{c}"), ExpectedVersion::Any, events).await.unwrap();
        units += i64::from((1..=PER_CART).sum::<u32>());
    }
    units
}

fn small_batches() -> SubscriptionOptions {
    SubscriptionOptions { batch_size: 20, poll_interval: Duration::from_millis(50), ..SubscriptionOptions::default() }
}

/// Generation 1, built and published as an application would have before any rebuild.
async fn generation_one<F: Fixture>(fixture: &F) {
    let store = fixture.store();
    let sink = ExactlyOnce::new(store.clone(), fixture.build(1, Duration::ZERO).await.unwrap());
    let mut subscription = Subscription::new(store.clone(), sink);
    subscription.catch_up().await.unwrap();
    let mut transaction = store.begin().await.unwrap();
    subscription.sink().projection().publish(&mut transaction).await.unwrap();
    store.commit(transaction).await.unwrap();
}

/// Three readers poll the view through a rebuild of 600 events (slowed to 2 ms each):
/// every read is one whole generation, the old one until the switch and the new one after
/// it, never going back; the new generation then follows live; retiring refuses the live
/// generation and drops the old one's table and checkpoint.
pub async fn readers_see_the_complete_old_generation_until_the_switch_and_the_complete_new_one_after<F: Fixture>(
    fixture: F,
) {
    let carts = i64::from(CARTS);
    let units = write_carts(&fixture).await;
    generation_one(&fixture).await;
    assert_eq!(fixture.read_view().await, (carts, units, 1, 1));

    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (fixture, done) = (fixture.clone(), done.clone());
            tokio::spawn(async move {
                let (mut reads, mut bad, mut last, mut of_one, mut partial_seen) = (0u32, Vec::new(), 1, 0u32, 0u32);
                while !done.load(Ordering::SeqCst) {
                    let read = fixture.read_view().await;
                    reads += 1;
                    if read.0 != carts || read.1 != units || read.2 != read.3 || read.2 < last {
                        bad.push(read);
                    }
                    last = read.3;
                    if read.3 == 1 {
                        of_one += 1;
                        // Generation 2's own table, read after that: being built.
                        if fixture.rows_of(2).await.is_some_and(|rows| rows < carts) {
                            partial_seen += 1;
                        }
                    }
                }
                (reads, bad, of_one, partial_seen)
            })
        })
        .collect();

    let store = fixture.store().clone();
    let blue_green = BlueGreen::new(store.clone(), "balances").options(small_batches());
    let started = Instant::now();
    let builder = fixture.clone();
    let rebuilt = blue_green
        .rebuild(store.clone(), |generation| async move { builder.build(generation, Duration::from_millis(2)).await })
        .await
        .unwrap();
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await; // reads after the switch
    done.store(true, Ordering::SeqCst);
    let (mut reads, mut of_one, mut partial_seen) = (0, 0, 0);
    for reader in readers {
        let (r, bad, one, partial) = reader.await.unwrap();
        assert!(bad.is_empty(), "a reader saw a partial or mixed model: {bad:?}");
        (reads, of_one, partial_seen) = (reads + r, of_one + one, partial_seen + partial);
    }
    println!(
        "rebuild of {} events took {took:?}; {reads} reads, {of_one} of generation 1 \
         ({partial_seen} while generation 2 was partly built), {} of generation 2, none partial",
        CARTS * PER_CART,
        reads - of_one
    );
    assert!(partial_seen > 0, "readers polled while generation 2 was being built");
    assert!(reads > of_one, "readers read generation 2 after the switch");
    assert_eq!((rebuilt.generation, rebuilt.previous), (2, 1));
    assert_eq!(blue_green.live().await.unwrap(), 2);
    assert_eq!(fixture.read_view().await, (carts, units, 2, 2));

    // The new generation follows live.
    let mut subscription = rebuilt.subscription;
    let follower = tokio::spawn(async move {
        subscription.run().await.unwrap();
    });
    store.append("cart-0", ExpectedVersion::Any, vec![added(1000)]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while fixture.read_view().await.1 != units + 1000 {
        assert!(Instant::now() < deadline, "the new generation did not apply the new event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower.abort();

    // Retiring: the live generation is refused; generation 1's table and checkpoint go.
    let projection = fixture.build(2, Duration::ZERO).await.unwrap();
    assert!(matches!(blue_green.retire(&projection, 2).await, Err(RebuildError::RetiringLive { generation: 2, .. })));
    blue_green.retire(&projection, 1).await.unwrap();
    assert_eq!(fixture.rows_of(1).await, None);
    let consumers: Vec<String> = store.consumers().await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(consumers, ["balances@g2", "balances@live"]);
    assert_eq!(fixture.read_view().await, (carts, units + 1000, 2, 2));
}

/// Two rebuilds prepared from the same live generation: the first switch wins, the
/// second is [`RebuildError::Superseded`]; a third rebuild starts from the new generation.
pub async fn of_two_rebuilds_from_the_same_generation_only_the_first_switch_wins<F: Fixture>(fixture: F) {
    let carts = i64::from(CARTS);
    let units = write_carts(&fixture).await;
    generation_one(&fixture).await;
    let store = fixture.store().clone();
    let blue_green = BlueGreen::new(store.clone(), "balances");
    let build = |generation| {
        let fixture = fixture.clone();
        async move { fixture.build(generation, Duration::ZERO).await }
    };
    let first = blue_green.prepare(store.clone(), build).await.unwrap();
    let second = blue_green.prepare(store.clone(), build).await.unwrap();
    assert_eq!((first.generation, second.generation), (2, 2));
    blue_green.switch(first).await.unwrap();
    match blue_green.switch(second).await {
        Err(RebuildError::Superseded { generation: 2, expected: 1, found: 2, .. }) => {}
        other => panic!("expected the second switch to be superseded, got {:?}", other.map(|r| r.generation)),
    }
    // Both caught up the same table exactly once between them (one checkpoint).
    assert_eq!(fixture.read_view().await, (carts, units, 2, 2));
    let third = blue_green.rebuild(store.clone(), build).await.unwrap();
    assert_eq!((third.generation, third.previous), (3, 2));
    assert_eq!(fixture.read_view().await, (carts, units, 3, 3));
}
