//! annals on NATS JetStream: events leave the service.
//!
//! - [`Relay`] (`relay.rs`): every event of any annals store's feed, published to a
//!   JetStream stream exactly once and in commit order, across crashes, restarts and
//!   concurrent relays (fenced with `Nats-Expected-Last-Sequence`, resumed from the
//!   stream's own last message: no checkpoint table).
//! - [`JetStreamFeed`] (`feed.rs`): a relay's JetStream stream read in another service
//!   as an annals `EventFeed`, so its projections and handlers consume it with the code
//!   that consumes a local feed; exactly once into a read model whose store keeps the
//!   stream sequence as its checkpoint.
//! - [`subject`] (`subject.rs`): where each event goes, `{prefix}.{category}.{stream}`,
//!   with an injective encoding for ids a subject cannot carry.
//! - [`headers`] (`headers.rs`): what each message carries besides the envelope.
//! - `testing` (feature `testing`): a throwaway `nats-server -js` for test suites.
//!
//! Only what a NATS 2.9 server offers is used (the client's `server_2_10`+ features are
//! off): a 2.10 server would add multi-filter consumers and subject transforms, 2.12
//! atomic batch publishes (a whole feed batch in one fenced publish).

mod feed;
pub mod headers;
mod lease;
mod relay;
pub mod subject;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use feed::JetStreamFeed;
pub use relay::{Relay, RelayError, RelayStatus};
pub use subject::Partitions;
