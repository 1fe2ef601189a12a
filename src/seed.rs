//! Demo and benchmark data. The demo catalog (10 categories, 1,000 products) is
//! deterministic: the same names, prices and timestamps on every run and backend.
//! `seed_products` appends N more in batched multi-row inserts.
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{
    ActiveValue::Set, EntityTrait, PaginatorTrait, TransactionTrait, sea_query::OnConflict,
};

use crate::{
    catalog::{Catalog, validate},
    db::entities::{category, product},
    error::AppError,
};

pub const DEMO_PRODUCTS: u64 = 1_000;
const BATCH: usize = 1_000;
/// How long a seed tries to deliver its cache clear before leaving it to the replayers.
const CLEAR_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

const CATEGORIES: [&str; 10] = [
    "Bakery",
    "Beverages",
    "Books",
    "Electronics",
    "Garden",
    "Home",
    "Outdoors",
    "Pantry",
    "Sports",
    "Toys",
];
const ADJECTIVES: [&str; 16] = [
    "Classic", "Compact", "Deluxe", "Eco", "Everyday", "Golden", "Handmade", "Heritage", "Light",
    "Modern", "Organic", "Premium", "Rustic", "Smart", "Sturdy", "Vintage",
];
const NOUNS: [&str; 16] = [
    "Basket", "Blender", "Bottle", "Candle", "Chair", "Jacket", "Kettle", "Lamp", "Mug",
    "Notebook", "Puzzle", "Racket", "Scarf", "Speaker", "Teapot", "Tent",
];

/// splitmix64: tiny, fast, and the same on every platform (also drives the property
/// test's generator, so its failures reproduce from a seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The `n`-th generated product (deterministic in `n`), for category ids `cats`.
fn generated(n: u64, cats: &[i32]) -> product::ActiveModel {
    let mut rng = Rng(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 42);
    let name = format!(
        "{} {} {}",
        ADJECTIVES[rng.below(16) as usize],
        NOUNS[rng.below(16) as usize],
        n + 1
    );
    let at = base_time() + chrono::Duration::minutes(n as i64);
    product::ActiveModel {
        name: Set(name.clone()),
        description: Set(format!("{name}: a demo product of the larder catalog.")),
        price_cents: Set(99 + rng.below(50_000) as i64),
        category_id: Set(cats[(n % cats.len() as u64) as usize]),
        stock_quantity: Set(if rng.below(10) == 0 {
            0
        } else {
            rng.below(500) as i32 + 1
        }),
        version: Set(1),
        created_at: Set(at),
        updated_at: Set(at),
        ..Default::default()
    }
}

/// The demo category ids, created if missing.
async fn demo_categories(catalog: &Catalog) -> Result<Vec<i32>, AppError> {
    let rows: Vec<category::ActiveModel> = CATEGORIES
        .iter()
        .map(|name| category::ActiveModel {
            name: Set(name.to_string()),
            slug: Set(validate::slug(name)),
            created_at: Set(base_time()),
            ..Default::default()
        })
        .collect();
    category::Entity::insert_many(rows)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(catalog.db())
        .await?;
    let mut ids = Vec::new();
    for name in CATEGORIES {
        let c = crate::db::queries::category_by_slug(catalog.db(), &validate::slug(name))
            .await?
            .ok_or_else(|| AppError::Internal(format!("demo category {name} missing")))?;
        ids.push(c.id);
    }
    Ok(ids)
}

/// `larder seed --products N`: connects, appends `products` generated products, and
/// retires every cached entry (waiting briefly for Redis, so the cache is retired
/// rather than skipped).
pub async fn command(config: crate::config::Config, products: u64) -> Result<(), String> {
    let started = std::time::Instant::now();
    let db = crate::db::connect(
        &config.database_url,
        config.db_max_connections,
        config.db_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    let cache = crate::cache::Cache::from_config(&config).map_err(|e| e.to_string())?;
    cache
        .wait_connected(std::time::Duration::from_secs(3))
        .await;
    let catalog = Catalog::new(db, std::sync::Arc::new(cache));
    let added = seed_products(&catalog, products)
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!(
        "inserted {added} products in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// On an empty catalog, inserts the demo catalog. Returns how many products it added.
pub async fn demo_if_empty(catalog: &Catalog) -> Result<u64, AppError> {
    if product::Entity::find().count(catalog.db()).await? > 0 {
        return Ok(0);
    }
    let added = insert(catalog, 0, DEMO_PRODUCTS).await?;
    tracing::info!(products = added, "inserted the demo catalog");
    Ok(added)
}

/// Appends `count` generated products (numbered after the existing ones).
pub async fn seed_products(catalog: &Catalog, count: u64) -> Result<u64, AppError> {
    let start = product::Entity::find().count(catalog.db()).await?;
    insert(catalog, start, count).await
}

async fn insert(catalog: &Catalog, start: u64, count: u64) -> Result<u64, AppError> {
    let cats = demo_categories(catalog).await?;
    let mut n = start;
    while n < start + count {
        let end = (n + BATCH as u64).min(start + count);
        let rows: Vec<product::ActiveModel> = (n..end).map(|i| generated(i, &cats)).collect();
        let txn = catalog.db().begin().await?;
        product::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
        // Rows appear behind the cache's back: the clear that retires every cached
        // entry (ids cached as absent included) and page is recorded with them.
        catalog.record_clear(&txn).await?;
        txn.commit().await?;
        n = end;
    }
    let cache = catalog.cache();
    if cache.backend() == "redis" {
        if !catalog.deliver_pending(CLEAR_PATIENCE).await {
            tracing::warn!(
                "could not reach Redis to clear the cache; every running instance delivers the recorded clear once it can"
            );
        }
    } else if let Err(e) = cache.clear().await {
        cache.log_error(&e);
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_products_depend_only_on_their_number() {
        let a = generated(7, &[1, 2, 3]);
        let b = generated(7, &[1, 2, 3]);
        assert_eq!(a.name, b.name);
        assert_eq!(a.price_cents, b.price_cents);
        assert_ne!(generated(8, &[1, 2, 3]).name, a.name);
    }
}
