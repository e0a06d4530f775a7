//! An event's [`Payload`]: its JSON, kept as the store returned it and decoded when read.
//!
//! A store that keeps payloads as JSON text (PostgreSQL's `json` column, SQLite's text)
//! hands the text over as it is; decoding an event then parses that text once, straight
//! into the event type. Parsing it into a [`serde_json::Value`] first and deserializing the
//! event from that value (what an envelope holding a `Value` costs) is two to three times
//! the work per event, and for a projection catching up or an aggregate loading thousands
//! of events it was the largest cost left on the client's side. The value is still there
//! for code that wants it ([`Payload::value`], parsed once and kept), and for upcasters,
//! which work on JSON values.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The payload of a stored event: JSON, as the store returned it.
///
/// Build one from a [`serde_json::Value`] (`Payload::from(value)`), or, in a store adapter,
/// from the JSON text it stored ([`Payload::from_json_text`]). Read it with
/// [`decode`](Payload::decode) (straight into a type), [`value`](Payload::value) (as a
/// JSON value, parsed once) or [`json_text`](Payload::json_text).
///
/// Two payloads are equal when their JSON values are (whatever their text), and a payload
/// compares with a [`serde_json::Value`] directly:
///
/// ```
/// # use annals::Payload;
/// let stored = Payload::from_json_text(r#"{ "sku": "tea", "qty": 2 }"#.to_owned());
/// assert_eq!(stored, serde_json::json!({"qty": 2, "sku": "tea"}));
/// assert_eq!(stored.value()?["qty"], 2);
///
/// #[derive(serde::Deserialize)]
/// struct Line { sku: String, qty: u32 }
/// let line: Line = stored.decode()?;
/// assert_eq!((line.sku.as_str(), line.qty), ("tea", 2));
/// # Ok::<(), serde_json::Error>(())
/// ```
///
/// Text that is not JSON serde_json reads (a store holding a row annals did not write) is
/// kept as it is; reading it is then an error naming the problem, and an event's
/// [`Envelope::decode`](crate::Envelope::decode) turns that into a
/// [`DecodeError::Payload`](crate::DecodeError::Payload) naming the stored event.
#[derive(Clone)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    /// Made from a value.
    Value(Value),
    /// The JSON text as stored, and its value once [`Payload::value`] parsed it.
    Text { text: Box<str>, parsed: OnceLock<Value> },
}

impl Payload {
    /// A payload from the JSON text a store kept, parsed only when read.
    ///
    /// The text is not checked here: a store whose column only accepts JSON (PostgreSQL's
    /// `json`) need not pay a parse per row; a store that can hold anything checks it
    /// before (SQLite's adapter does).
    pub fn from_json_text(text: String) -> Payload {
        Payload(Repr::Text { text: text.into_boxed_str(), parsed: OnceLock::new() })
    }

    /// The payload deserialized as `T`: from the stored text in one parse when there is
    /// one (whether or not [`Payload::value`] parsed it too), else from the value.
    ///
    /// # Errors
    /// The text is not JSON, or does not have `T`'s shape.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        match &self.0 {
            Repr::Value(value) => T::deserialize(value),
            Repr::Text { text, .. } => serde_json::from_str(text),
        }
    }

    /// The payload as a JSON value, parsed from the stored text on first use and kept.
    ///
    /// # Errors
    /// The stored text is not JSON serde_json reads (a number beyond `f64`, a lone
    /// surrogate, nesting deeper than 128).
    pub fn value(&self) -> Result<&Value, serde_json::Error> {
        match &self.0 {
            Repr::Value(value) => Ok(value),
            Repr::Text { text, parsed } => match parsed.get() {
                Some(value) => Ok(value),
                None => {
                    let value = serde_json::from_str(text)?;
                    Ok(parsed.get_or_init(|| value))
                }
            },
        }
    }

    /// The payload as an owned JSON value (see [`Payload::value`]).
    ///
    /// # Errors
    /// As [`Payload::value`].
    pub fn into_value(self) -> Result<Value, serde_json::Error> {
        match self.0 {
            Repr::Value(value) => Ok(value),
            Repr::Text { text, parsed } => match parsed.into_inner() {
                Some(value) => Ok(value),
                None => serde_json::from_str(&text),
            },
        }
    }

    /// The payload as JSON text: the stored text when there is one, else the value
    /// serialized (compact).
    pub fn json_text(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Value(value) => Cow::Owned(value.to_string()),
            Repr::Text { text, .. } => Cow::Borrowed(text),
        }
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload(Repr::Value(value))
    }
}

impl Default for Payload {
    /// JSON `null`.
    fn default() -> Self {
        Payload::from(Value::Null)
    }
}

impl PartialEq for Payload {
    /// Equal JSON values; two texts that serde_json cannot read are equal when they are
    /// the same text.
    fn eq(&self, other: &Payload) -> bool {
        if let (Repr::Text { text: a, .. }, Repr::Text { text: b, .. }) = (&self.0, &other.0) {
            if a == b {
                return true;
            }
        }
        match (self.value(), other.value()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        self.value().is_ok_and(|value| value == other)
    }
}

impl PartialEq<Payload> for Value {
    fn eq(&self, other: &Payload) -> bool {
        other == self
    }
}

/// JSON `null`, what indexing answers where there is nothing.
static NULL: Value = Value::Null;

impl<I: serde_json::value::Index> std::ops::Index<I> for Payload {
    type Output = Value;

    /// As indexing a [`serde_json::Value`]: the value at a key or position, `null` where
    /// there is none, and `null` for stored text serde_json cannot read (use
    /// [`Payload::value`] to see why). Never panics.
    ///
    /// ```
    /// # use annals::Payload;
    /// let payload = Payload::from_json_text(r#"{"sku": "tea", "tags": ["green"]}"#.to_owned());
    /// assert_eq!(payload["sku"], "tea");
    /// assert_eq!(payload["tags"][0], "green");
    /// assert!(payload["missing"].is_null());
    /// ```
    fn index(&self, index: I) -> &Value {
        match self.value() {
            Ok(value) => index.index_into(value).unwrap_or(&NULL),
            Err(_) => &NULL,
        }
    }
}

impl fmt::Debug for Payload {
    /// The JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json_text())
    }
}

impl fmt::Display for Payload {
    /// The JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.json_text())
    }
}

impl Serialize for Payload {
    /// As the JSON value, for any format; stored text serde_json cannot read is an error
    /// saying so.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value() {
            Ok(value) => value.serialize(serializer),
            Err(error) => Err(serde::ser::Error::custom(format!("the stored payload is not readable JSON: {error}"))),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Payload::from)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_and_value_of_the_same_json_are_equal() {
        let text = Payload::from_json_text(r#"{"b": [1, 2.5], "a": null}"#.to_owned());
        let value = Payload::from(json!({"a": null, "b": [1, 2.5]}));
        assert_eq!(text, value);
        assert_eq!(value, text);
        assert_eq!(text, json!({"a": null, "b": [1, 2.5]}));
        assert_ne!(text, Payload::from(json!({"a": 1})));
    }

    #[test]
    fn text_serde_json_cannot_read_is_an_error_when_read_and_kept_as_it_is() {
        let huge = Payload::from_json_text(r#"{"a": 1e400}"#.to_owned());
        assert!(huge.value().unwrap_err().to_string().contains("number out of range"));
        assert!(huge.decode::<Value>().is_err());
        assert_eq!(huge.json_text(), r#"{"a": 1e400}"#);
        assert_eq!(huge, huge.clone(), "the same unreadable text");
        assert_ne!(huge, json!({"a": null}));
        assert!(serde_json::to_string(&huge).unwrap_err().to_string().contains("not readable JSON"));
    }

    #[test]
    fn serialized_as_its_value_and_deserialized_from_any_json() {
        let text = Payload::from_json_text(r#"{ "qty" : 2 }"#.to_owned());
        assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"qty":2}"#);
        let back: Payload = serde_json::from_str(r#"{"qty":2}"#).unwrap();
        assert_eq!(back, text);
        assert_eq!(back.into_value().unwrap(), json!({"qty": 2}));
        assert_eq!(text.into_value().unwrap(), json!({"qty": 2}));
    }
}
