//! The normalised arguments of one page of `products(...)`: filters, order, size and
//! cursor. `queries` turns them into SQL; the catalog also uses one as a list page's
//! cache key, so they serialize.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Filters of `products(filter:)`, already validated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ProductFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category_id: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_price_cents: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_price_cents: Option<i64>,
    /// Lower-cased, trimmed substring of the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum OrderField {
    Id,
    Name,
    Price,
    CreatedAt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ProductOrder {
    pub field: OrderField,
    pub descending: bool,
}

/// The sort value a cursor resumes after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum SortValue {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
}

/// A keyset position: the row's sort value and id, for one order field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct Cursor {
    pub field: OrderField,
    pub value: SortValue,
    pub id: i32,
}

/// One page request of `products`, normalised: it is also the list's cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ProductQuery {
    pub filter: ProductFilter,
    pub order: ProductOrder,
    pub first: u64,
    pub after: Option<Cursor>,
}
