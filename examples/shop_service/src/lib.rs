//! # shop-service — an e-commerce microservice on annals
//!
//! An HTTP service (axum) around the `shopping_cart` domain, laid out the way an
//! event-sourced service usually is. Start it with `cargo run -p shop-service`; start
//! from [`start`] to embed it, or [`app`] to mount its routes yourself.
//!
//! ```text
//!            POST/DELETE                     GET                       GET
//!                │                            │                         │
//!   ┌────────────▼────────────┐   ┌───────────▼───────────┐  ┌──────────▼──────────┐
//!   │ write side  (commands)  │   │ read side  (queries)  │  │ notification service│
//!   │ Repository<Cart, S>     │   │ CartSummaries,        │  │ Outbox, keyed by    │
//!   │ load · decide · append  │   │ BestSellers           │  │ event id            │
//!   └────────────┬────────────┘   └───────────▲───────────┘  └──────────▲──────────┘
//!                │ append                     │ Subscription            │ Subscription
//!                ▼                            │ (own checkpoint)        │ (own checkpoint)
//!         ┌─────────────────────────── event store S ───────────────────────────┐
//!         │  MemoryStore, or PostgresStore when DATABASE_URL is set (EventFeed)  │
//!         └──────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! ## Write side
//! [`commands`]: `POST /carts/{id}/items`, `DELETE /carts/{id}/items/{sku}?qty=N` and
//! `POST /carts/{id}/checkout` become `AddItem`, `RemoveItem` and `Checkout`, executed by
//! [`annals::Repository`]: load the cart from its events, let it decide, append the new
//! events expecting the loaded version (reloading and deciding again if another request
//! won the race). The response carries the new stream version, the global position and
//! the stored events. The cart's rules answer with 409 (the cart's state refuses:
//! not enough units, checked out, empty) or 422 (a quantity of zero); malformed requests
//! with 400/415/422. Every error body is `{ "error": "..." }`.
//!
//! Each request has a correlation id ([`correlation`]): the client's `x-correlation-id`
//! header (a UUID) or a new one. It is stored in the metadata of every event the request
//! causes and echoed in the response header. `GET /carts/{id}/history` reads the cart's
//! stream itself: the audit trail, every envelope with its metadata, always current.
//!
//! ## Read side
//! [`queries`] never touch the event store: `GET /carts/{id}` and
//! `GET /products/best-sellers` read [`projections`] held in memory and fed by a
//! [`Subscription`] each, which catches up from the first event at start and then follows
//! new ones. `CartSummaries` follows each cart's own events; `BestSellers` combines all
//! carts: it tracks each open cart's lines and counts them as sold at checkout.
//!
//! **Reads are eventually consistent.** A projection sees an event some milliseconds
//! after the command stored it, so a read right after a write may not show it yet. Every
//! query answer carries `as_of`, the checkpoint the projection has read to, and accepts a
//! bounded wait: `GET /carts/{id}?min_version=V` with the `version` the command returned
//! (exact on every store), `GET /products/best-sellers?min_position=P` with its
//! `position`. The write side never reads the projections: commands decide on the
//! aggregate loaded from its events, which is always current.
//!
//! ## An independent consumer
//! [`notifications`] plays another service: it subscribes to `cart.checked_out` on its
//! own, with its own checkpoint, and queues an order-confirmation email for each
//! (`GET /notifications`). Emails leave the system, so the handler is at-least-once and
//! idempotent: keyed by the event id, a redelivered checkout queues nothing new. The
//! email records the checkout request's correlation id.
//!
//! ## A workflow
//! [`fulfillment`] is a process manager across the cart and a `Shipment` aggregate: a
//! checkout asks the warehouse to pack the order within an hour; the process completes
//! when the shipment is packed, and records the warehouse's refusal (an order over the
//! parcel limit) or the missed deadline. `GET /orders/{id}` shows where it is.
//!
//! ## Stores
//! Everything is generic over [`ServiceStore`]: any [`EventStore`] with an [`EventFeed`].
//! The binary uses [`annals_memory::MemoryStore`], a SQLite file when
//! `DATABASE_URL=sqlite://...` (feature `sqlite`), or PostgreSQL when
//! `DATABASE_URL=postgres://...` (feature `postgres`); both features are on by default.
//! Read models are rebuilt from the events at every start, so on SQLite and PostgreSQL
//! they come back as they were.
#![warn(missing_docs)]

pub mod commands;
pub mod correlation;
pub mod error;
pub mod fulfillment;
pub mod metrics;
pub mod notifications;
pub mod projections;
pub mod queries;
pub mod shipments;
pub mod traces;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use annals::store::{CheckpointStore, DeadlineStore};
use annals::subscription::{Filter, InMemoryProjection, Sink, Subscription, SubscriptionOptions};
use annals::{Aggregate, EventFeed, EventStore, Repository};
use axum::routing::{delete, get, post};
use axum::Router;
use shopping_cart::Cart;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::notifications::Outbox;
use crate::queries::ReadModels;

/// What the service needs of a store: streams to execute commands on, and a feed the
/// read models and the notification consumer follow. `MemoryStore`, `SqliteStore` and
/// `PostgresStore` qualify.
pub trait ServiceStore: EventStore + EventFeed + CheckpointStore + DeadlineStore {}

impl<S: EventStore + EventFeed + CheckpointStore + DeadlineStore> ServiceStore for S {}

/// How long a failed subscription waits before it resumes from its checkpoint.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Subscriptions poll this often when no wake-up arrives.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The service's state: the write side's repository, the read models and the
/// notification consumer's outbox. Clones share everything.
pub struct Service<S> {
    /// The write side.
    pub carts: Repository<Cart, S>,
    /// The read side.
    pub read: ReadModels,
    /// The independent consumer's outbox.
    pub outbox: InMemoryProjection<Outbox>,
    /// Each order's shipment, from the fulfillment service (with NATS).
    pub shipments: InMemoryProjection<shipments::Shipments>,
}

impl<S: Clone> Clone for Service<S> {
    fn clone(&self) -> Self {
        Service {
            carts: self.carts.clone(),
            read: self.read.clone(),
            outbox: self.outbox.clone(),
            shipments: self.shipments.clone(),
        }
    }
}

impl<S: ServiceStore> Service<S> {
    /// A service on `store` with empty read models; [`spawn_consumers`](Self::spawn_consumers)
    /// fills them.
    pub fn new(store: S) -> Self {
        Service {
            carts: Repository::new(store),
            read: ReadModels::default(),
            outbox: InMemoryProjection::new(Outbox::default()),
            shipments: InMemoryProjection::new(shipments::Shipments::default()),
        }
    }

    /// Starts the subscriptions: one per projection and the notification consumer's.
    /// Each runs until its task is aborted; one that fails is logged and resumes from its
    /// checkpoint after a second.
    pub fn spawn_consumers(&self) -> Consumers {
        let store = self.carts.store();
        Consumers {
            tasks: vec![
                spawn_subscription(store.clone(), self.read.carts.clone()),
                spawn_subscription(store.clone(), self.read.best_sellers.clone()),
                spawn_subscription(store.clone(), self.outbox.clone()),
                tokio::spawn(fulfillment::run(store.clone(), RESTART_AFTER)),
            ],
        }
    }
}

/// The running subscription tasks; dropping it stops them.
pub struct Consumers {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Consumers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs a subscription of `sink` until aborted: the events it handles, of cart streams
/// only (the store filters out everything else).
fn spawn_subscription<S, K>(store: S, sink: K) -> JoinHandle<()>
where
    S: ServiceStore,
    K: Sink + Clone + Sync + 'static,
{
    let options = SubscriptionOptions { poll_interval: POLL_INTERVAL, ..SubscriptionOptions::default() };
    tokio::spawn(async move {
        loop {
            let filter: Filter = sink.filter().category(Cart::NAME);
            let name = sink.name().to_owned();
            let mut subscription = Subscription::new(store.clone(), sink.clone()).filter(filter).options(options);
            if let Err(e) = subscription.run().await {
                eprintln!("shop-service: subscription `{name}` stopped: {e}; resuming in {RESTART_AFTER:?}");
            }
            tokio::time::sleep(RESTART_AFTER).await;
        }
    })
}

/// The HTTP routes of `service`: commands, queries, history and notifications, behind the
/// correlation-id middleware. Run [`Service::spawn_consumers`] too, or the queries never
/// see an event.
///
/// | route | side |
/// | --- | --- |
/// | `POST /carts/{id}/items` `{sku, qty, unit_price_cents}` | write |
/// | `DELETE /carts/{id}/items/{sku}?qty=N` | write |
/// | `POST /carts/{id}/checkout` | write |
/// | `GET /carts/{id}/history` | event store (audit trail) |
/// | `GET /carts/{id}?min_version=V` | read (`CartSummaries`) |
/// | `GET /products/best-sellers?limit=N&min_position=P` | read (`BestSellers`) |
/// | `GET /notifications` | notification consumer |
/// | `GET /orders/{id}` | the fulfillment workflow of a checked-out cart |
/// | `GET /orders/{id}/shipment` | the fulfillment service's shipment of the order (with NATS) |
/// | `GET /metrics` | operations: metrics in Prometheus' text format |
pub fn app<S: ServiceStore>(service: &Service<S>) -> Router {
    let write = Router::new()
        .route("/carts/{id}/items", post(commands::add_item::<S>))
        .route("/carts/{id}/items/{sku}", delete(commands::remove_item::<S>))
        .route("/carts/{id}/checkout", post(commands::checkout::<S>))
        .route("/carts/{id}/history", get(commands::history::<S>))
        .with_state(service.carts.clone());
    write
        .merge(queries::router(service.read.clone()))
        .merge(notifications::router(service.outbox.clone()))
        .merge(fulfillment::router(service.carts.store().clone()))
        .merge(shipments::router(service.shipments.clone()))
        .merge(metrics::router())
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn(correlation::layer))
}

/// A service serving on a socket. Dropping it stops the server and the consumers.
pub struct Running {
    addr: SocketAddr,
    server: JoinHandle<io::Result<()>>,
    _consumers: Consumers,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://{addr}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it stops on its own only on an I/O error).
    pub async fn wait(mut self) -> io::Result<()> {
        (&mut self.server).await.map_err(io::Error::other)?
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts the service on `store`: the consumers, and the HTTP server on `addr`
/// (`127.0.0.1:0` for a free port; see [`Running::addr`]).
pub async fn start<S: ServiceStore>(store: S, addr: SocketAddr) -> io::Result<Running> {
    start_with_shutdown(store, addr, None, std::future::pending()).await
}

/// Like [`start`], with graceful shutdown when `shutdown` completes (the server stops
/// accepting, finishes in-flight requests and [`Running::wait`] returns).
///
/// With `nats` (a client of a NATS server with JetStream), the service also relays its
/// events to JetStream stream `SHOP` and consumes the fulfillment service's shipments
/// ([`shipments`]).
pub async fn start_with_shutdown<S: ServiceStore>(
    store: S,
    addr: SocketAddr,
    nats: Option<async_nats::Client>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Running> {
    // The recorder first, so that it counts from the first command on.
    metrics::handle();
    let service = Service::new(store);
    let mut consumers = service.spawn_consumers();
    if let Some(client) = nats {
        consumers.tasks.extend(shipments::spawn(service.carts.store().clone(), client, service.shipments.clone()));
    }
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let router = app(&service);
    let server = tokio::spawn(async move { axum::serve(listener, router).with_graceful_shutdown(shutdown).await });
    Ok(Running { addr, server, _consumers: consumers })
}
