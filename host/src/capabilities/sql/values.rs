//! Binding the plugin's typed parameters and reading rows back as typed
//! values, once per backend: each database's driver names its types
//! differently, so one macro stamps out a `bind` and a `row` per backend.

use crate::bindings::hookhost::hooks::sql::Value;

/// Binding parameters and reading rows for one backend: `$null` is what a
/// `null` parameter binds as, `$types` the Rust types a column is tried as,
/// in order.
macro_rules! backend {
    ($module:ident, $db:ty, $null:expr, [$($ty:ty),*]) => {
        pub(super) mod $module {
            use sqlx::Row as _;

            use super::{IntoValue, Value};

            type Query<'q> =
                sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>;

            pub(in super::super) fn bind<'q>(
                mut query: Query<'q>,
                params: &'q [Value],
            ) -> Query<'q> {
                for param in params {
                    query = match param {
                        Value::Null => query.bind($null),
                        Value::Integer(n) => query.bind(*n),
                        Value::Float(x) => query.bind(*x),
                        Value::Text(text) => query.bind(text.as_str()),
                        Value::Bytes(bytes) => query.bind(bytes.as_slice()),
                        Value::Boolean(b) => query.bind(*b),
                    };
                }
                query
            }

            pub(in super::super) fn columns(row: &<$db as sqlx::Database>::Row) -> Vec<String> {
                row.columns().iter().map(|c| sqlx::Column::name(c).to_owned()).collect()
            }

            pub(in super::super) fn row(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<Vec<Value>, String> {
                (0..row.len()).map(|index| column(row, index)).collect()
            }

            fn column(row: &<$db as sqlx::Database>::Row, index: usize) -> Result<Value, String> {
                $(
                    if let Ok(value) = row.try_get::<Option<$ty>, _>(index) {
                        return Ok(value.map_or(Value::Null, IntoValue::into_value));
                    }
                )*
                let column = &row.columns()[index];
                Err(format!(
                    "column `{}` has type {}, which rows cannot carry; cast it to text or a \
                     number in the query",
                    sqlx::Column::name(column),
                    sqlx::TypeInfo::name(sqlx::Column::type_info(column)),
                ))
            }
        }
    };
}

backend!(sqlite, sqlx::Sqlite, Option::<String>::None, [i64, f64, String, Vec<u8>]);
backend!(
    postgres,
    sqlx::Postgres,
    super::UntypedNull,
    [bool, i16, i32, i64, f32, f64, String, Vec<u8>]
);
backend!(
    mysql,
    sqlx::MySql,
    Option::<String>::None,
    [i64, i32, i16, i8, u64, u32, u16, u8, f64, f32, String, Vec<u8>]
);

/// The bytes the host holds for one row of `values` while it collects a
/// result: the values themselves and the text and bytes they point to.
pub(super) fn row_bytes(values: &[Value]) -> usize {
    let heap: usize = values
        .iter()
        .map(|value| match value {
            Value::Text(text) => text.len(),
            Value::Bytes(bytes) => bytes.len(),
            _ => 0,
        })
        .sum();
    std::mem::size_of::<Vec<Value>>() + std::mem::size_of_val(values) + heap
}

/// A PostgreSQL `NULL` parameter of no declared type, so the server infers
/// it from the statement (a typed `NULL` is refused by columns of another
/// type).
struct UntypedNull;

impl sqlx::Type<sqlx::Postgres> for UntypedNull {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        sqlx::postgres::PgTypeInfo::with_oid(sqlx::postgres::types::Oid(0))
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for UntypedNull {
    fn encode_by_ref(
        &self,
        _: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        Ok(sqlx::encode::IsNull::Yes)
    }
}

/// A column value read as a Rust type, as the plugin receives it.
trait IntoValue {
    fn into_value(self) -> Value;
}

macro_rules! integer_values {
    ($($ty:ty),*) => {$(
        impl IntoValue for $ty {
            fn into_value(self) -> Value {
                i64::try_from(self).map_or_else(|_| Value::Text(self.to_string()), Value::Integer)
            }
        }
    )*};
}
integer_values!(i64, i32, i16, i8, u64, u32, u16, u8);

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::Float(self)
    }
}

impl IntoValue for f32 {
    fn into_value(self) -> Value {
        Value::Float(self.into())
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Boolean(self)
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::Text(self)
    }
}

impl IntoValue for Vec<u8> {
    fn into_value(self) -> Value {
        Value::Bytes(self)
    }
}
