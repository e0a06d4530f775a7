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
