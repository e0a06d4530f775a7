//! Every attribute and key the derives accept, in one place.

use std::fmt;

/// The name of an attribute or of a key inside one.
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// The keys of `#[event(...)]`, in the order the error messages list them.
pub(crate) const EVENT_KEYS: &[Symbol] = &[NAME, VERSION, OLDEST, PREVIOUS, UPCAST, ALIASES];

// upcast(from = 1, with = v1_to_v2)
pub(crate) const FROM: Symbol = Symbol("from");
pub(crate) const WITH: Symbol = Symbol("with");

/// The keys of `upcast(...)`, in the order the error messages list them.
pub(crate) const UPCAST_KEYS: &[Symbol] = &[FROM, WITH];

// #[aggregate(name = "cart", events(ItemAdded), commands(AddItem), error = CartError,
//             event_enum = CartEvent, command_enum = CartCommand)]
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
pub(crate) const EVENTS: Symbol = Symbol("events");
pub(crate) const COMMANDS: Symbol = Symbol("commands");
pub(crate) const ERROR: Symbol = Symbol("error");
pub(crate) const EVENT_ENUM: Symbol = Symbol("event_enum");
pub(crate) const COMMAND_ENUM: Symbol = Symbol("command_enum");

/// The keys of `#[aggregate(...)]`, in the order the error messages list them.
pub(crate) const AGGREGATE_KEYS: &[Symbol] = &[NAME, EVENTS, COMMANDS, ERROR, EVENT_ENUM, COMMAND_ENUM];

// #[projection(name = "cart_summaries", events(ItemAdded), context = PgConnection)]
pub(crate) const PROJECTION: Symbol = Symbol("projection");
pub(crate) const CONTEXT: Symbol = Symbol("context");

/// The keys of `#[projection(...)]`, in the order the error messages list them.
pub(crate) const PROJECTION_KEYS: &[Symbol] = &[NAME, EVENTS, CONTEXT];

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
