//! What a committed write leaves for the cache to forget (`Written`), as the write
//! knows it or as its outbox row recorded it: the product's tombstone, a category's
//! "absent" marker to replace, and the list counters to bump (`lists::write_counters`,
//! also for rows that recorded the change instead of the counters).
use super::lists::{Listed, write_counters};
use crate::db::entities::cache_outbox;

/// What a committed write leaves for the cache to forget.
#[derive(Clone, Debug)]
pub struct Written {
    pub product_id: i32,
    /// The product's version after the write (for a deletion: its last version + 1).
    pub version: i64,
    pub gone: bool,
    /// A category the write created (its "absent" marker must go).
    pub new_category: Option<i32>,
    /// The list counters it changes (`lists::write_counters`); `None` when they are not
    /// known (a row recorded before rows carried them, or a `larder seed` clear), whose
    /// replay clears the cache instead.
    pub counters: Option<Vec<String>>,
}

impl Written {
    /// No item and no known counters: delivering it clears the cache.
    pub(super) fn clear() -> Self {
        Self {
            product_id: 0,
            version: 0,
            gone: false,
            new_category: None,
            counters: None,
        }
    }
}

impl From<&cache_outbox::Model> for Written {
    fn from(r: &cache_outbox::Model) -> Self {
        let counters = match (&r.list_counters, &r.change) {
            (Some(c), _) => Some(c.split_whitespace().map(str::to_string).collect()),
            (None, Some(change)) => counters_of_change(change),
            (None, None) => None,
        };
        Self {
            product_id: r.product_id,
            version: r.version,
            gone: r.gone,
            new_category: r.new_category_id,
            counters,
        }
    }
}

/// The list counters of a single-statement write's `change` (`db::writes`): the listed
/// fields before and after, `[category_id, in_stock, price_cents, name]` or `null`.
/// Unreadable: `None`, whose delivery clears the cache (never too little).
fn counters_of_change(change: &str) -> Option<Vec<String>> {
    type Fields = Option<(i32, bool, i64, String)>;
    let (before, after): (Fields, Fields) = serde_json::from_str(change).ok()?;
    let listed = |f: Fields| {
        f.map(|(category_id, in_stock, price_cents, name)| Listed {
            category_id,
            in_stock,
            price_cents,
            name,
        })
    };
    Some(write_counters(
        listed(before).as_ref(),
        listed(after).as_ref(),
    ))
}

/// The list counters `written` bump (names; the cache bumps every group's copy), each
/// once.
pub(super) fn counter_names(written: &[Written]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in written.iter().flat_map(|w| w.counters.iter().flatten()) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::counters_of_change;

    #[test]
    fn a_change_as_postgres_writes_it_names_the_counters_of_its_transition() {
        // `json_build_array(...)::text` as Postgres renders it.
        let price = r#"[[1, true, 300, "Lamp"], [1, true, 700, "Lamp"]]"#;
        assert_eq!(
            counters_of_change(price),
            Some(vec!["c1:price".to_string(), "all:price".to_string()])
        );
        let created = r#"[null, [2, false, 100, "Mug"]]"#;
        assert_eq!(
            counters_of_change(created),
            Some(vec![
                "c2:members".to_string(),
                "all:members".to_string(),
                "categories".to_string()
            ])
        );
        let restocked_only = r#"[[3, true, 100, "Cup"], [3, true, 100, "Cup"]]"#;
        assert_eq!(counters_of_change(restocked_only), Some(Vec::new()));
        // Unreadable: no counters, so its delivery clears the cache.
        for bad in ["", "[1]", "{}", r#"[[1, "yes", 1, "x"], null]"#] {
            assert_eq!(counters_of_change(bad), None, "{bad}");
        }
    }
}
