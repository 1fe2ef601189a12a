//! The catalog's own types: what the cache stores (serde), what the GraphQL layer
//! shows, and the normalised arguments of a product list. Entities stay in `db`.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::entities::{category, product};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: i32,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub category_id: i32,
    pub stock_quantity: i32,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<product::Model> for Product {
    fn from(m: product::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            description: m.description,
            price_cents: m.price_cents,
            category_id: m.category_id,
            stock_quantity: m.stock_quantity,
            version: m.version,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    pub id: i32,
    pub name: String,
    pub slug: String,
}

impl From<category::Model> for Category {
    fn from(m: category::Model) -> Self {
        Self {
            id: m.id,
            name: m.name,
            slug: m.slug,
        }
    }
}

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

impl Cursor {
    /// The position just after `p` in `field` order.
    pub fn of(p: &Product, field: OrderField) -> Self {
        let value = match field {
            OrderField::Id => SortValue::Int(p.id.into()),
            OrderField::Name => SortValue::Text(p.name.clone()),
            OrderField::Price => SortValue::Int(p.price_cents),
            OrderField::CreatedAt => SortValue::Time(p.created_at),
        };
        Self {
            field,
            value,
            id: p.id,
        }
    }
}

/// One page request of `products`, normalised: it is also the list's cache key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct ProductQuery {
    pub filter: ProductFilter,
    pub order: ProductOrder,
    pub first: u64,
    pub after: Option<Cursor>,
}

/// What a cached list page holds: ids and counts, never item data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    pub ids: Vec<i32>,
    pub total: u64,
    pub has_next: bool,
}

/// The `categories` list: ids in name order with their product counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryCounts {
    pub entries: Vec<(i32, u64)>,
}
