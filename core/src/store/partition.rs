//! [`Partition`]: one of several disjoint parts of the feed, by stream, so that several
//! runners can share one projection's work while each stream's events stay in order.

use std::fmt;

/// One of `count` disjoint parts of the feed: the events of the streams whose
/// [`stream_hash`] leaves `index` when divided by `count`.
///
/// Every stream falls in exactly one partition of a count, so `count` consumers, one per
/// partition, together see every event once, and each sees all the events of its streams
/// in commit order. A partitioned projection keeps one checkpoint per partition and runs
/// its partitions wherever there are runners for them (see the PostgreSQL adapter's
/// `PgPartitionedRunner`). Changing the count gives every stream a new partition: it is a
/// new set of consumers, so rebuild the read model (side by side) when you change it.
///
/// ```
/// # use annals::store::{Filter, Partition};
/// let second = Partition::new(1, 4)?;
/// let filter = Filter::all().partition(second);
/// let owner = Partition::of("cart-42", 4)?;
/// assert_eq!(filter.matches("cart-42", "cart.item_added"), owner == second);
/// // The partitions of a count split the streams between them, each stream in one.
/// let owners = Partition::all(4)?.filter(|p| p.contains("cart-42")).count();
/// assert_eq!(owners, 1);
/// # Ok::<(), annals::store::InvalidPartition>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    index: u32,
    count: u32,
}

/// A partition that does not exist: the count is 0, or the index is not below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "there is no partition {index} of {count}: the count must be at least 1 and the index below it (0 to count - 1)"
)]
pub struct InvalidPartition {
    /// The index asked for.
    pub index: u32,
    /// The count asked for.
    pub count: u32,
}

impl Partition {
    /// Partition `index` (from 0) of `count`.
    ///
    /// ```
    /// # use annals::store::Partition;
    /// assert_eq!(Partition::new(3, 4)?.index(), 3);
    /// assert!(Partition::new(4, 4).is_err());
    /// assert!(Partition::new(0, 0).is_err());
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn new(index: u32, count: u32) -> Result<Self, InvalidPartition> {
        if index < count {
            Ok(Partition { index, count })
        } else {
            Err(InvalidPartition { index, count })
        }
    }

    /// The `count` partitions of `count`, in index order.
    ///
    /// ```
    /// # use annals::store::Partition;
    /// assert_eq!(Partition::all(3)?.map(|p| p.index()).collect::<Vec<_>>(), [0, 1, 2]);
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn all(count: u32) -> Result<impl Iterator<Item = Partition>, InvalidPartition> {
        Partition::new(0, count)?;
        Ok((0..count).map(move |index| Partition { index, count }))
    }

    /// The partition of `count` that `stream_id` falls in.
    ///
    /// ```
    /// # use annals::store::Partition;
    /// assert!(Partition::of("cart-42", 4)?.contains("cart-42"));
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn of(stream_id: &str, count: u32) -> Result<Partition, InvalidPartition> {
        Partition::new(0, count)?;
        Ok(Partition { index: stream_hash(stream_id) % count, count })
    }

    /// Its index, from 0.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many partitions there are.
    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether the events of `stream_id` belong to this partition.
    ///
    /// ```
    /// # use annals::store::Partition;
    /// assert!(Partition::new(0, 1)?.contains("any-stream"));
    /// # Ok::<(), annals::store::InvalidPartition>(())
    /// ```
    pub fn contains(self, stream_id: &str) -> bool {
        self.count == 1 || stream_hash(stream_id) % self.count == self.index
    }

    /// Whether this is the one partition of 1: every stream, no filter at all.
    pub fn is_everything(self) -> bool {
        self.count == 1
    }
}

/// `index/count`, e.g. `1/4`.
impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The hash that places a stream in its [`Partition`]: PostgreSQL's `hashtext` of the
/// stream id's UTF-8 bytes (Bob Jenkins' `lookup3` hash as PostgreSQL's `hash_bytes`
/// computes it on a little-endian machine), read as an unsigned 32-bit integer.
///
/// The same in SQL, so that a store can filter by partition in the database:
/// `hashtext(stream_id COLLATE "C")::int8 & 4294967295`. PostgreSQL keeps the function
/// stable across versions (hash-partitioned tables depend on it); its results differ on
/// big-endian servers, where a store that filters in SQL would disagree with this
/// function, so the PostgreSQL adapter checks both agree before it reads a partition.
///
/// ```
/// # use annals::store::stream_hash;
/// // What PostgreSQL 15 gives for `hashtext('cart-42')::int8 & 4294967295`:
/// assert_eq!(stream_hash("cart-42"), 2_802_866_379);
/// ```
pub fn stream_hash(stream_id: &str) -> u32 {
    hash_bytes(stream_id.as_bytes())
}

/// PostgreSQL's `hash_bytes` (`src/common/hashfn.c`), little-endian reading.
fn hash_bytes(key: &[u8]) -> u32 {
    // PostgreSQL passes the length as a C `int`: ids longer than that do not exist here,
    // and wrapping keeps this total.
    let length = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let init = 0x9e37_79b9_u32.wrapping_add(length).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut chunks = key.chunks_exact(12);
    for chunk in &mut chunks {
        a = a.wrapping_add(word(&chunk[0..4]));
        b = b.wrapping_add(word(&chunk[4..8]));
        c = c.wrapping_add(word(&chunk[8..12]));
        mix(&mut a, &mut b, &mut c);
    }
    let rest = chunks.remainder();
    // The last 0 to 11 bytes: into `a`, `b`, then `c` from its second byte on (the
    // lowest byte of `c` is left to the length, which went into all three).
    for (i, &byte) in rest.iter().enumerate() {
        let byte = u32::from(byte);
        match i {
            0..=3 => a = a.wrapping_add(byte << (8 * i)),
            4..=7 => b = b.wrapping_add(byte << (8 * (i - 4))),
            _ => c = c.wrapping_add(byte << (8 * (i - 7))),
        }
    }
    finish(&mut a, &mut b, &mut c);
    c
}

/// Four bytes as a little-endian word.
fn word(bytes: &[u8]) -> u32 {
    bytes.iter().rev().fold(0, |word, &byte| (word << 8) | u32::from(byte))
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests report failure by panicking")]

    use super::*;

    #[test]
    fn the_hash_is_postgresql_hashtext() {
        // From PostgreSQL 15: `SELECT hashtext($1)::int8 & 4294967295`. The PostgreSQL
        // adapter's tests compare many more ids with the server.
        assert_eq!(stream_hash(""), 0xa7ea_466d);
        assert_eq!(stream_hash("cart-42"), 2_802_866_379);
        assert_eq!(stream_hash("ünïcode-strëam-id-longer-than-twelve"), 1_437_391_761);
    }

    #[test]
    fn each_stream_falls_in_one_partition_and_the_partitions_share_the_streams() {
        let streams: Vec<String> = (0..4_000).map(|n| format!("cart-{n}")).collect();
        for count in [1, 2, 3, 4, 7] {
            let mut sizes = vec![0usize; count as usize];
            for stream in &streams {
                let owners: Vec<Partition> = Partition::all(count).unwrap().filter(|p| p.contains(stream)).collect();
                assert_eq!(owners, [Partition::of(stream, count).unwrap()], "{stream} in {count}");
                sizes[owners[0].index() as usize] += 1;
            }
            // An even share each, give or take 20% (a fair hash over 4,000 ids).
            let share = streams.len() / count as usize;
            assert!(sizes.iter().all(|&n| n * 5 > share * 4 && n * 5 < share * 6), "{count}: {sizes:?}");
        }
    }

    #[test]
    fn invalid_partitions_are_refused() {
        assert_eq!(Partition::new(2, 2), Err(InvalidPartition { index: 2, count: 2 }));
        assert!(Partition::of("a", 0).is_err());
        assert!(Partition::all(0).is_err());
        assert_eq!(Partition::new(1, 3).unwrap().to_string(), "1/3");
    }
}
