//! [`Lease`]: which of several relays of one store publishes, held in a JetStream
//! key-value bucket (NATS 2.9 has them): the holder writes its key again every third of
//! the lease, expecting the revision it wrote last; the bucket's `max_age` removes a key
//! nobody renews, and a standby's `create` succeeds only once the key is gone. So a relay
//! that dies is replaced within one lease, and two never both believe they hold it for
//! longer than that (and even then the publish fence refuses the second's messages).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;

/// The bucket the leases live in.
const BUCKET: &str = "ANNALS_RELAY_LEASES";

/// A relay's hold on its JetStream stream.
pub(crate) struct Lease {
    store: kv::Store,
    key: String,
    holder: String,
    revision: u64,
    /// How long a key lives without renewal.
    pub(crate) duration: Duration,
}

/// What trying to take a lease found.
pub(crate) enum Taken {
    /// This relay holds it now.
    Held(Box<Lease>),
    /// Another relay holds it: its id.
    ByOther(String),
}

impl Lease {
    /// Takes the lease on `stream` for `holder`, if nobody holds it.
    pub(crate) async fn take(
        jetstream: &jetstream::Context,
        stream: &str,
        holder: &str,
        duration: Duration,
        replicas: usize,
    ) -> Result<Taken, String> {
        let store = match jetstream.get_key_value(BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                // The bucket's stream, made as the client's `create_key_value` would make it:
                // that call first asks for account details a 2.9 server answers in a form
                // async-nats 0.51 does not read.
                let config = stream::Config {
                    name: format!("KV_{BUCKET}"),
                    subjects: vec![format!("$KV.{BUCKET}.>")],
                    max_messages_per_subject: 1,
                    max_age: duration,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: stream::DiscardPolicy::New,
                    num_replicas: replicas,
                    ..Default::default()
                };
                jetstream.get_or_create_stream(config).await.map_err(|e| format!("making the lease bucket: {e}"))?;
                jetstream.get_key_value(BUCKET).await.map_err(|e| format!("opening the lease bucket: {e}"))?
            }
        };
        let key = key_of(stream);
        match store.create(&key, Bytes::from(holder.to_owned())).await {
            Ok(revision) => {
                Ok(Taken::Held(Box::new(Lease { store, key, holder: holder.to_owned(), revision, duration })))
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let other = match store.get(&key).await {
                    Ok(Some(value)) => String::from_utf8_lossy(&value).into_owned(),
                    _ => "another relay".to_owned(),
                };
                Ok(Taken::ByOther(other))
            }
            Err(e) => Err(format!("taking the lease: {e}")),
        }
    }

    /// Renews the lease every third of its duration; returns when it is lost (another
    /// relay took it after this one failed to renew in time) or cannot be renewed.
    pub(crate) async fn keep(mut self) -> String {
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.store.update(&self.key, Bytes::from(self.holder.clone()), self.revision).await {
                Ok(revision) => self.revision = revision,
                Err(e) => return format!("the relay lease on `{}` was lost: {e}", self.key),
            }
        }
    }
}

/// The key of `stream`'s lease: letters and digits as they are, anything else `_` and its
/// hex (KV keys allow few characters; stream names allow more).
fn key_of(stream: &str) -> String {
    let mut key = String::with_capacity(stream.len());
    for byte in stream.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            key.push(char::from(byte));
        } else {
            key.push_str(&format!("_{byte:02x}"));
        }
    }
    key
}
