//! Subjects: where a relayed event goes in JetStream, `{prefix}.{category}.{stream}`.
//!
//! A NATS subject token cannot hold `.`, whitespace, `*` or `>`, and some ids hold them.
//! Each token is the text itself when it is a plain word (ASCII letters, digits, `_`,
//! `-`), and otherwise `~` followed by the lowercase hex of its UTF-8 bytes. A plain word
//! never starts with `~`, so no two texts share a token: the encoding is injective, and
//! hostile ids neither collide nor break routing. The category (the stream id before its
//! first `-`, the aggregate's name) comes first, so a consumer can take one aggregate's
//! events with `{prefix}.{category}.>`.

/// The subject of an event of `stream_id` under `prefix`.
pub fn subject(prefix: &str, stream_id: &str) -> String {
    let category = stream_id.split_once('-').map_or("", |(category, _)| category);
    format!("{prefix}.{}.{}", token(category), token(stream_id))
}

/// How many partitions a [`Relay`](crate::Relay) spreads streams over: each stream goes
/// to partition `fnv1a64(stream id) % count`, so all of its events stay in one partition,
/// in order, and a consumer bound to a partition
/// ([`JetStreamFeed::partition`](crate::JetStreamFeed::partition)) sees whole streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partitions(std::num::NonZeroU32);

impl Partitions {
    /// `count` partitions; `None` for 0.
    pub fn new(count: u32) -> Option<Self> {
        std::num::NonZeroU32::new(count).map(Partitions)
    }

    /// How many there are.
    pub fn count(self) -> u32 {
        self.0.get()
    }

    /// The partition of `stream_id`, from 0. The hash (64-bit FNV-1a of the id's UTF-8
    /// bytes) is fixed: changing it would move streams between partitions.
    pub fn of(self, stream_id: &str) -> u32 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in stream_id.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // The remainder is below the count, a u32.
        u32::try_from(hash % u64::from(self.0.get())).unwrap_or(0)
    }
}

/// The subject of an event of `stream_id` under `prefix` when the relay writes
/// `partitions`: `{prefix}.{partition}.{category}.{stream}`.
pub fn partitioned_subject(prefix: &str, partitions: Partitions, stream_id: &str) -> String {
    let category = stream_id.split_once('-').map_or("", |(category, _)| category);
    format!("{prefix}.{}.{}.{}", partitions.of(stream_id), token(category), token(stream_id))
}

/// The subject token of `text`.
pub fn token(text: &str) -> String {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        return text.to_owned();
    }
    let mut encoded = String::with_capacity(1 + 2 * text.len());
    encoded.push('~');
    for byte in text.bytes() {
        encoded.push(char::from(HEX[usize::from(byte >> 4)]));
        encoded.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    encoded
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread_streams() {
        let three = Partitions::new(3).unwrap();
        assert_eq!(Partitions::new(0), None);
        // Fixed values: a change of the hash would move streams between partitions.
        assert_eq!([three.of("cart-1"), three.of("cart-2"), three.of("a.b"), three.of("")], [0, 0, 0, 2]);
        let counts = (0..3000).fold([0u32; 3], |mut counts, n| {
            counts[usize::try_from(three.of(&format!("cart-{n}"))).unwrap()] += 1;
            counts
        });
        assert!(counts.iter().all(|&c| (800..1200).contains(&c)), "{counts:?}");
        assert_eq!(partitioned_subject("shop", three, "cart-1"), "shop.0.cart.cart-1");
    }

    #[test]
    fn plain_ids_stay_readable_and_hostile_ones_are_encoded_without_collisions() {
        assert_eq!(subject("shop", "cart-42"), "shop.cart.cart-42");
        assert_eq!(subject("shop", "a.b"), "shop.~.~612e62");
        assert_eq!(subject("shop", "order-x y"), "shop.order.~6f726465722d782079");
        let ids = ["a.b", "a b", "*", ">", "ünï", "~61", "a", "", "cart-1", "cart-1.", "cart.1", "cart-1 "];
        let tokens: std::collections::HashSet<String> = ids.iter().map(|id| token(id)).collect();
        assert_eq!(tokens.len(), ids.len(), "{tokens:?}");
        for id in ids {
            let subject = subject("p", id);
            assert!(!subject.contains(' ') && !subject.contains('*') && !subject.contains('>'), "{subject}");
            assert_eq!(subject.split('.').count(), 3, "{subject}");
        }
    }
}
