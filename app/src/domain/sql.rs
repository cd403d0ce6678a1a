//! How domain values travel to and from the database (server only, `ssr`): `Timestamp` as
//! BIGINT epoch milliseconds, status enums as their TEXT names. Rows in the store carry
//! these types, so a stored status that the domain does not know fails when it is read,
//! not later in a comparison with a string.

use super::lifecycle::{GrantStatus, RequestStatus, Verdict};
use super::time::Timestamp;
use sqlx::any::{Any, AnyTypeInfo, AnyValueRef};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};

impl Type<Any> for Timestamp {
    fn type_info() -> AnyTypeInfo {
        <i64 as Type<Any>>::type_info()
    }

    fn compatible(ty: &AnyTypeInfo) -> bool {
        <i64 as Type<Any>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Any> for Timestamp {
    fn decode(value: AnyValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Timestamp(<i64 as Decode<Any>>::decode(value)?))
    }
}

impl<'q> Encode<'q, Any> for Timestamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Any>>::encode_by_ref(&self.0, buf)
    }
}

/// Maps an enum with `as_str(self) -> &'static str` and `parse(&str) -> Option<Self>` to a
/// TEXT column. Exported for the server's own enums (job kinds, mail statuses...).
#[macro_export]
macro_rules! sql_text_enum {
    ($t:ty) => {
        impl ::sqlx::Type<::sqlx::Any> for $t {
            fn type_info() -> ::sqlx::any::AnyTypeInfo {
                <String as ::sqlx::Type<::sqlx::Any>>::type_info()
            }

            fn compatible(ty: &::sqlx::any::AnyTypeInfo) -> bool {
                <String as ::sqlx::Type<::sqlx::Any>>::compatible(ty)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Any> for $t {
            fn decode(
                value: ::sqlx::any::AnyValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                let s = <String as ::sqlx::Decode<::sqlx::Any>>::decode(value)?;
                <$t>::parse(&s).ok_or_else(|| format!("unknown {} {s:?}", stringify!($t)).into())
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Any> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut <::sqlx::Any as ::sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <String as ::sqlx::Encode<::sqlx::Any>>::encode(self.as_str().to_owned(), buf)
            }
        }
    };
}

sql_text_enum!(RequestStatus);
sql_text_enum!(GrantStatus);
sql_text_enum!(Verdict);
