//! The name of every attribute and key the derives accept. Which keys an attribute
//! takes, in the order its messages list them, is its `attributes!` table (`*/attr.rs`).

use std::fmt;

/// The name of an attribute or of a key inside one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Symbol(&'static str);

// #[event(name = "cart.item_added", version = 3, oldest = 1, previous = ItemAddedV2,
//         upcast(from = 1, with = v1_to_v2), aliases("ItemAdded"))]
pub(crate) const EVENT: Symbol = Symbol("event");
pub(crate) const NAME: Symbol = Symbol("name");
pub(crate) const VERSION: Symbol = Symbol("version");
pub(crate) const OLDEST: Symbol = Symbol("oldest");
pub(crate) const PREVIOUS: Symbol = Symbol("previous");
pub(crate) const UPCAST: Symbol = Symbol("upcast");
pub(crate) const ALIASES: Symbol = Symbol("aliases");
/// `crate = "path"`, on every derive: where annals is, when renamed or re-exported.
pub(crate) const CRATE: Symbol = Symbol("crate");

// upcast(from = 1, with = v1_to_v2)
pub(crate) const FROM: Symbol = Symbol("from");
pub(crate) const WITH: Symbol = Symbol("with");

// #[aggregate(name = "cart", events(ItemAdded), commands(AddItem), error = CartError,
//             event_enum = CartEvent, command_enum = CartCommand)]
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
pub(crate) const EVENTS: Symbol = Symbol("events");
pub(crate) const COMMANDS: Symbol = Symbol("commands");
pub(crate) const ERROR: Symbol = Symbol("error");
pub(crate) const EVENT_ENUM: Symbol = Symbol("event_enum");
pub(crate) const COMMAND_ENUM: Symbol = Symbol("command_enum");

// #[projection(name = "cart_summaries", events(ItemAdded), context = PgConnection)]
pub(crate) const PROJECTION: Symbol = Symbol("projection");
pub(crate) const CONTEXT: Symbol = Symbol("context");

// #[process(name = "fulfillment", correlate_by = order_id | correlate_with = order_of, events(CheckedOut),
//           commands(ReserveStock => Inventory), deadlines(PaymentTimedOut), rejected(TakePayment))]
pub(crate) const PROCESS: Symbol = Symbol("process");
pub(crate) const CORRELATE_BY: Symbol = Symbol("correlate_by");
pub(crate) const CORRELATE_WITH: Symbol = Symbol("correlate_with");
pub(crate) const DEADLINES: Symbol = Symbol("deadlines");
pub(crate) const REJECTED: Symbol = Symbol("rejected");

impl Symbol {
    /// The name as written in source.
    pub(crate) fn as_str(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl PartialEq<Symbol> for syn::Path {
    fn eq(&self, symbol: &Symbol) -> bool {
        self.is_ident(symbol.0)
    }
}

/// "`a`, `b`, `c`": the accepted keys, for "expected one of ..." messages.
pub(crate) fn list(symbols: &[Symbol]) -> String {
    symbols.iter().map(|symbol| format!("`{symbol}`")).collect::<Vec<_>>().join(", ")
}

/// The key `written` most likely meant: the one at the smallest edit distance (letters
/// inserted, removed, replaced or swapped), if it is close enough to be a typo.
pub(crate) fn closest(written: &str, symbols: &[Symbol]) -> Option<Symbol> {
    symbols
        .iter()
        .map(|symbol| (distance(written, symbol.0), *symbol))
        .filter(|(distance, symbol)| *distance <= (symbol.0.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, symbol)| symbol)
}

/// The optimal string alignment distance between `a` and `b`.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_key() {
        let aggregate = &[NAME, EVENTS, COMMANDS, ERROR, EVENT_ENUM, COMMAND_ENUM, CRATE];
        let event = &[NAME, VERSION, OLDEST, PREVIOUS, UPCAST, ALIASES, CRATE];
        assert_eq!(closest("evnets", aggregate), Some(EVENTS));
        assert_eq!(closest("comands", aggregate), Some(COMMANDS));
        assert_eq!(closest("nme", event), Some(NAME));
        assert_eq!(closest("schema::v", event), None);
        assert_eq!(closest("colour", &[NAME, EVENTS, CONTEXT, CRATE]), None);
    }
}
