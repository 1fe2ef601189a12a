//! The catalog's own types: what the cache stores (serde) and what the GraphQL layer
//! shows; the normalised arguments of a product list come from `db::lists`. Entities
//! stay in `db`.
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

// The list arguments are the database's types (its queries read them); the catalog
// names them too.
pub use crate::db::lists::{
    Cursor, OrderField, ProductFilter, ProductOrder, ProductQuery, SortValue,
};

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
