//! JSON bound as the text serde_json writes, for the `json` columns (migration 6).
//!
//! sqlx's `Json<T>` binds `jsonb`, which PostgreSQL parses into its own number and string
//! representation: `-0.0` comes back as `0`, `1e300` as a 301-digit integer, and a NUL
//! character is refused. Bound as text and stored as `json`, the value reads back as the
//! exact text written, so every double returns bit for bit.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo};
use sqlx::{Encode, Postgres, Type};

/// A JSON value bound as `text` (statements cast it to `json`), written straight into the
/// statement's buffer without an intermediate string.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JsonText<'a, T: serde::Serialize + ?Sized>(pub(crate) &'a T);

impl<T: serde::Serialize + ?Sized> Type<Postgres> for JsonText<'_, T> {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }
}

impl<T: serde::Serialize + ?Sized> PgHasArrayType for JsonText<'_, T> {
    fn array_type_info() -> PgTypeInfo {
        <&str as PgHasArrayType>::array_type_info()
    }
}

impl<T: serde::Serialize + ?Sized> Encode<'_, Postgres> for JsonText<'_, T> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        serde_json::to_writer(&mut **buf, self.0)?;
        Ok(IsNull::No)
    }
}
