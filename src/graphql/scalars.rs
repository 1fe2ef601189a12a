//! The scalars. `Decimal`: exact money. Output is a string ("19.99"); input is a string,
//! an integer, or a JSON number read from its shortest decimal form, so `19.99` stays
//! 19.99 and no binary floating point enters the arithmetic. `DateTime`: a point in time
//! as an RFC 3339 string.
use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal(pub rust_decimal::Decimal);

/// An exact decimal number, serialized as a string such as "19.99".
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        let text = match &value {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(InputValueError::expected_type(value)),
        };
        rust_decimal::Decimal::from_str(&text)
            .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
            .map(Decimal)
            .map_err(|_| InputValueError::custom(format!("{text:?} is not a decimal number")))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// A point in time (UTC) as an RFC 3339 string, e.g. "2025-01-01T00:00:00+00:00".
///
/// Our own scalar rather than async-graphql's, which declares `@specifiedBy(url:)`:
/// most tools introspect without asking for `specifiedByURL` (graphql-js's default
/// query, graphql-inspector), so they would see a schema other than `schema.graphql`.
/// The format is in the description instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTime(pub chrono::DateTime<chrono::Utc>);

/// A point in time (UTC) as an RFC 3339 string, e.g. "2025-01-01T00:00:00+00:00".
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Ok(Self(s.parse()?)),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_exactly_from_their_decimal_form() {
        let n = serde_json::from_str::<serde_json::Value>("19.99").unwrap();
        let v = Value::from_json(n).unwrap();
        assert_eq!(Decimal::parse(v).unwrap().0.to_string(), "19.99");
        assert_eq!(
            Decimal::parse(Value::String("0.1".into()))
                .unwrap()
                .0
                .to_string(),
            "0.1"
        );
        assert!(Decimal::parse(Value::String("abc".into())).is_err());
        assert!(Decimal::parse(Value::Boolean(true)).is_err());
    }
}
