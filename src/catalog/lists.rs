//! Which list counters a page reads and a write bumps: precise list invalidation.
//!
//! A page holds ids and counts only (items are loaded by id through their own cache), so
//! a write can change a page only through a field the page filters or sorts on, within
//! the scope the page covers: one category (`c<id>`) or every product (`all`). One
//! counter per (scope, field), plus `categories` for the `categories` list:
//!
//! | counter            | a page reads it when it                       | bumped by                        |
//! |--------------------|-----------------------------------------------|----------------------------------|
//! | `<scope>:members`  | always (membership, `totalCount`)              | create, delete, a category move  |
//! | `<scope>:stock`    | filters on `inStock`                          | a stock change that flips it     |
//! | `<scope>:price`    | filters on a price bound or sorts by price    | a price change                   |
//! | `<scope>:name`     | searches or sorts by name                     | a name change                    |
//! | `categories`       | is the `categories` list (ids, counts)        | create, delete, a category move  |
//!
//! A write bumps the counters of the product's category (old and new on a move) and of
//! `all`; nothing else. `createdAt` and `id` never change, so pages sorted by them
//! depend on `members` only. Precision is per field, not per value: a price change from
//! 10 to 11 also retires the `minPrice: 50` pages of that category, which is what keeps
//! a write O(1).
use super::model::{OrderField, Product, ProductQuery};

/// The counter of the `categories` list.
pub const CATEGORIES: &str = "categories";

fn scope(category: Option<i32>) -> String {
    match category {
        Some(id) => format!("c{id}"),
        None => "all".to_string(),
    }
}

/// The counters a page of `q` depends on, in a fixed order (its tag lists their values
/// in this order).
pub fn page_counters(q: &ProductQuery) -> Vec<String> {
    let s = scope(q.filter.category_id);
    let f = &q.filter;
    let mut out = vec![format!("{s}:members")];
    if f.in_stock.is_some() {
        out.push(format!("{s}:stock"));
    }
    if f.min_price_cents.is_some()
        || f.max_price_cents.is_some()
        || q.order.field == OrderField::Price
    {
        out.push(format!("{s}:price"));
    }
    if f.search.is_some() || q.order.field == OrderField::Name {
        out.push(format!("{s}:name"));
    }
    out
}

/// What a page can see of a product: the fields pages filter or sort on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub category_id: i32,
    pub in_stock: bool,
    pub price_cents: i64,
    pub name: String,
}

impl Listed {
    /// What pages see of a row with these fields (`inStock` is a positive stock).
    pub fn new(category_id: i32, stock_quantity: i32, price_cents: i64, name: &str) -> Self {
        Self {
            category_id,
            in_stock: stock_quantity > 0,
            price_cents,
            name: name.to_string(),
        }
    }
}

impl From<&Product> for Listed {
    fn from(p: &Product) -> Self {
        Self::new(p.category_id, p.stock_quantity, p.price_cents, &p.name)
    }
}

/// The counters a write bumps, from the product as it was (`None`: created) and as it
/// is (`None`: deleted), both read inside the write's transaction.
pub fn write_counters(old: Option<&Listed>, new: Option<&Listed>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    match (old, new) {
        (None, None) => {}
        (Some(p), None) | (None, Some(p)) => {
            add(format!("c{}:members", p.category_id));
            add("all:members".into());
            add(CATEGORIES.into());
        }
        (Some(o), Some(n)) => {
            let moved = o.category_id != n.category_id;
            let changed = [
                ("stock", o.in_stock != n.in_stock),
                ("price", o.price_cents != n.price_cents),
                ("name", o.name != n.name),
            ];
            if moved {
                // Every page of both categories depends on their `members`.
                add(format!("c{}:members", o.category_id));
                add(format!("c{}:members", n.category_id));
                add(CATEGORIES.into());
            }
            for (field, yes) in changed {
                if yes {
                    if !moved {
                        add(format!("c{}:{field}", n.category_id));
                    }
                    add(format!("all:{field}"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::{ProductFilter, ProductOrder};

    fn listed(category_id: i32, stock: bool, price: i64, name: &str) -> Listed {
        Listed {
            category_id,
            in_stock: stock,
            price_cents: price,
            name: name.into(),
        }
    }

    fn query(filter: ProductFilter, field: OrderField) -> ProductQuery {
        ProductQuery {
            filter,
            order: ProductOrder {
                field,
                descending: false,
            },
            first: 20,
            after: None,
        }
    }

    #[test]
    fn a_page_reads_members_of_its_scope_and_each_field_it_filters_or_sorts_on() {
        let cat = ProductFilter {
            category_id: Some(3),
            ..Default::default()
        };
        assert_eq!(
            page_counters(&query(cat.clone(), OrderField::Id)),
            ["c3:members"]
        );
        assert_eq!(
            page_counters(&query(
                ProductFilter {
                    in_stock: Some(true),
                    min_price_cents: Some(500),
                    ..cat.clone()
                },
                OrderField::Name
            )),
            ["c3:members", "c3:stock", "c3:price", "c3:name"]
        );
        assert_eq!(
            page_counters(&query(Default::default(), OrderField::Price)),
            ["all:members", "all:price"]
        );
        assert_eq!(
            page_counters(&query(
                ProductFilter {
                    search: Some("mug".into()),
                    ..Default::default()
                },
                OrderField::CreatedAt
            )),
            ["all:members", "all:name"]
        );
    }

    #[test]
    fn a_write_bumps_only_what_it_changed_in_its_categories_and_all() {
        let a = listed(1, true, 500, "Mug");
        let none: [&str; 0] = [];
        // Stock that keeps `inStock`, or a description: nothing.
        assert_eq!(write_counters(Some(&a), Some(&a)), none);
        let out = listed(1, false, 500, "Mug");
        assert_eq!(
            write_counters(Some(&a), Some(&out)),
            ["c1:stock", "all:stock"]
        );
        let dearer = listed(1, true, 900, "Mug");
        assert_eq!(
            write_counters(Some(&a), Some(&dearer)),
            ["c1:price", "all:price"]
        );
        let renamed = listed(1, true, 500, "Cup");
        assert_eq!(
            write_counters(Some(&a), Some(&renamed)),
            ["c1:name", "all:name"]
        );
        let moved = listed(2, true, 500, "Mug");
        assert_eq!(
            write_counters(Some(&a), Some(&moved)),
            ["c1:members", "c2:members", "categories"]
        );
        let moved_and_dearer = listed(2, true, 900, "Mug");
        assert_eq!(
            write_counters(Some(&a), Some(&moved_and_dearer)),
            ["c1:members", "c2:members", "categories", "all:price"]
        );
        for (old, new) in [(None, Some(&a)), (Some(&a), None)] {
            assert_eq!(
                write_counters(old, new),
                ["c1:members", "all:members", "categories"]
            );
        }
    }
}
