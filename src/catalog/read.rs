//! The read path. Items (products, categories): one cache round trip for all asked ids,
//! misses through single-flight to one `WHERE id IN (...)` (merged with other requests'
//! concurrent misses, `batch`), then one conditional fill.
//! Lists: one round trip for all asked pages and the list counters they depend on
//! (`lists`), misses through single-flight to SQL, then one write of the new pages, each
//! tagged with the counter values read before its SQL ran.
//! Reads the trust lease kept from the cache go to the database; if it fails them, the
//! cache may still answer, marked as not covered by the promise (`uncovered_items`).
use std::{collections::HashMap, sync::Arc, time::Instant};

use futures::FutureExt;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Catalog,
    batch::Batcher,
    flight::{self, FlightClock, Flights, Outcome, Seen},
    lists,
    model::{Category, CategoryCounts, ListPage, Product, ProductQuery},
    pages::Wanted,
};
use crate::{
    cache::{
        Event, Fill, Kind, RequestTally,
        entry::{self, Entry},
        stamps::ItemStamp,
    },
    config::CacheTtls,
    db::queries,
    error::AppError,
};

/// An entity the item cache holds.
pub trait Cached: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    const KIND: Kind;
    fn id(&self) -> i32;
    fn version(&self) -> i64;
    fn ttl(ttls: &CacheTtls) -> std::time::Duration;
    fn flights(catalog: &Catalog) -> &Flights<i32, Self>;
    /// Where concurrent database reads of this kind merge (`catalog::batch`).
    fn batcher(catalog: &Catalog) -> &Batcher<Self>;
    /// In-process copies by id, tagged with their epoch, for kinds that never change.
    fn local(_catalog: &Catalog) -> Option<&moka::sync::Cache<i32, (u64, Self)>> {
        None
    }
    fn fetch(
        catalog: &Catalog,
        ids: Vec<i32>,
    ) -> impl Future<Output = Result<Vec<Self>, sea_orm::DbErr>> + Send;
}

impl Cached for Product {
    const KIND: Kind = Kind::Product;
    fn id(&self) -> i32 {
        self.id
    }
    fn version(&self) -> i64 {
        self.version.into()
    }
    fn ttl(ttls: &CacheTtls) -> std::time::Duration {
        ttls.product
    }
    fn flights(catalog: &Catalog) -> &Flights<i32, Self> {
        &catalog.inner.product_flights
    }
    fn batcher(catalog: &Catalog) -> &Batcher<Self> {
        &catalog.inner.product_batch
    }
    async fn fetch(catalog: &Catalog, ids: Vec<i32>) -> Result<Vec<Self>, sea_orm::DbErr> {
        Ok(queries::products_by_ids(catalog.db(), &ids)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

impl Cached for Category {
    const KIND: Kind = Kind::Category;
    fn id(&self) -> i32 {
        self.id
    }
    /// Categories never change after creation: every copy is version 1.
    fn version(&self) -> i64 {
        1
    }
    fn ttl(ttls: &CacheTtls) -> std::time::Duration {
        ttls.category
    }
    fn flights(catalog: &Catalog) -> &Flights<i32, Self> {
        &catalog.inner.category_flights
    }
    fn batcher(catalog: &Catalog) -> &Batcher<Self> {
        &catalog.inner.category_batch
    }
    fn local(catalog: &Catalog) -> Option<&moka::sync::Cache<i32, (u64, Self)>> {
        Some(&catalog.inner.local_categories)
    }
    async fn fetch(catalog: &Catalog, ids: Vec<i32>) -> Result<Vec<Self>, sea_orm::DbErr> {
        Ok(queries::categories_by_ids(catalog.db(), &ids)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}

/// Keeps in-process copies of what a read through the cache found (kinds with `local`).
fn keep_local<T: Cached>(
    local: Option<&moka::sync::Cache<i32, (u64, T)>>,
    snapshot: Option<&crate::cache::Snapshot>,
    ids: &[i32],
    found: &HashMap<i32, T>,
) {
    if let (Some(local), Some(s)) = (local, snapshot) {
        for id in ids {
            if let Some(v) = found.get(id) {
                local.insert(*id, (s.epoch, v.clone()));
            }
        }
    }
}

/// The cache name of one page of `products(...)`: its normalised arguments.
pub fn list_name(q: &ProductQuery) -> String {
    format!("products:{}", serde_json::to_string(q).unwrap_or_default())
}

impl Catalog {
    /// Products by id; ids that do not exist are absent from the map.
    pub async fn products(
        &self,
        ids: &[i32],
        tally: &Arc<RequestTally>,
    ) -> Result<HashMap<i32, Product>, AppError> {
        self.items(ids, tally).await
    }

    /// Categories by id; ids that do not exist are absent from the map.
    pub async fn categories(
        &self,
        ids: &[i32],
        tally: &Arc<RequestTally>,
    ) -> Result<HashMap<i32, Category>, AppError> {
        self.items(ids, tally).await
    }

    async fn items<T: Cached>(
        &self,
        ids: &[i32],
        tally: &Arc<RequestTally>,
    ) -> Result<HashMap<i32, T>, AppError> {
        let start = Instant::now();
        let cache = self.cache();
        let mut found = HashMap::with_capacity(ids.len());
        // Kinds that never change are served from process when this request already
        // knows the epoch (from an earlier read): no round trip for them at all.
        let local = T::local(self);
        let rest: Vec<i32>;
        let ids = match (local, tally.stamps.epoch()) {
            (Some(local), Some(epoch)) => {
                rest = ids
                    .iter()
                    .copied()
                    .filter(|id| match local.get(id) {
                        Some((e, v)) if e == epoch => {
                            found.insert(*id, v);
                            false
                        }
                        _ => true,
                    })
                    .collect();
                let n = found.len() as u64;
                cache.stats.add(T::KIND, Event::Hit, n);
                tally.hit(T::KIND, n);
                if rest.is_empty() {
                    return Ok(found);
                }
                &rest[..]
            }
            _ => ids,
        };
        let keys: Vec<String> = ids.iter().map(|&id| cache.keys.item(T::KIND, id)).collect();
        let snapshot = cache.read(T::KIND, &keys, &[], tally).await;
        // Each miss with what it saw of its entry: the single-flight join rule.
        let mut missed: Vec<(i32, Seen)> = Vec::new();
        let stamps = &tally.stamps;
        match &snapshot {
            Some(s) => {
                stamps.saw(s.epoch);
                for (i, ((&id, key), raw)) in ids.iter().zip(&keys).zip(&s.values).enumerate() {
                    if s.value_lost(i) {
                        // Its group's node is down or not trusted: nothing is known.
                        stamps.unusable();
                        missed.push((id, None));
                        continue;
                    }
                    // Hashed only for a miss: a hit never joins a flight.
                    let seen = || Some(flight::seen(s.epoch, raw.as_deref()));
                    let entry = raw.as_deref().and_then(Entry::parse);
                    let stamp = entry.as_ref().and_then(|e| ItemStamp::of(e, s.epoch));
                    match (entry, stamp) {
                        (Some(Entry::Value { data, .. }), Some(stamp)) => {
                            match serde_json::from_str::<T>(data) {
                                Ok(v) => {
                                    found.insert(id, v);
                                    stamps.item(T::KIND, key, stamp);
                                }
                                Err(_) => missed.push((id, seen())),
                            }
                        }
                        (_, Some(stamp)) => stamps.item(T::KIND, key, stamp),
                        _ => missed.push((id, seen())),
                    }
                }
            }
            None => {
                stamps.unusable();
                missed.extend(ids.iter().map(|&id| (id, None)));
            }
        }
        let hits = (ids.len() - missed.len()) as u64;
        cache.stats.add(T::KIND, Event::Hit, hits);
        cache.stats.add(T::KIND, Event::Miss, missed.len() as u64);
        if snapshot.is_some() || cache.is_enabled() {
            tally.hit(T::KIND, hits);
            tally.miss(T::KIND, missed.len() as u64);
        }
        if missed.is_empty() {
            keep_local(local, snapshot.as_ref(), ids, &found);
            return Ok(found);
        }
        let epoch = snapshot.as_ref().map(|s| s.epoch);
        let catalog = self.clone();
        let leader_tally = tally.clone();
        let loaded = T::flights(self)
            .load(&missed, start, move |ids, clock| {
                // One statement (merged with other reads' ids: `batch`).
                leader_tally
                    .reserve_sql(1)
                    .then(|| catalog.lead::<T>(ids, clock, epoch, leader_tally).boxed())
            })
            .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(f) => {
                let e = f.into_error(T::KIND.as_str(), tally);
                // The lease sent these reads to the database, and it failed them.
                if tally.lacked_a_lease()
                    && matches!(e, AppError::Unavailable | AppError::Overloaded)
                {
                    let ids: Vec<i32> = missed.iter().map(|(id, _)| *id).collect();
                    if let Some(rest) = self.uncovered_items::<T>(&ids, tally).await {
                        found.extend(rest);
                        return Ok(found);
                    }
                }
                return Err(e);
            }
        };
        for &(id, _) in &missed {
            let key = cache.keys.item(T::KIND, id);
            match loaded.get(&id) {
                Some(v) => {
                    stamps.item(T::KIND, &key, ItemStamp::Version(v.version()));
                    found.insert(id, v.clone());
                }
                None => stamps.item(T::KIND, &key, ItemStamp::Absent),
            }
        }
        keep_local(local, snapshot.as_ref(), ids, &found);
        Ok(found)
    }

    /// What the cache holds of `ids` under the current epoch, read without the trust
    /// lease after the database failed the read it sent there: every id answered (a row,
    /// or "none"), or `None`. Not covered by the promise; the tally says so.
    async fn uncovered_items<T: Cached>(
        &self,
        ids: &[i32],
        tally: &RequestTally,
    ) -> Option<HashMap<i32, T>> {
        let cache = self.cache();
        let keys: Vec<String> = ids.iter().map(|&id| cache.keys.item(T::KIND, id)).collect();
        let s = cache.read_uncovered(T::KIND, &keys, &[], tally).await?;
        let mut found = HashMap::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            if s.value_lost(i) {
                return None;
            }
            let entry = s.values[i].as_deref().and_then(Entry::parse)?;
            match (ItemStamp::of(&entry, s.epoch)?, entry) {
                (ItemStamp::Version(_), Entry::Value { data, .. }) => {
                    found.insert(id, serde_json::from_str(data).ok()?);
                }
                (ItemStamp::Version(_), _) => return None,
                (ItemStamp::Absent | ItemStamp::Gone, _) => {}
            }
        }
        cache.stats.add(T::KIND, Event::Hit, ids.len() as u64);
        tally.hit(T::KIND, ids.len() as u64);
        Some(found)
    }

    /// A flight's work: one SQL statement for all its ids, then one conditional fill
    /// (only when the cache answered, so the epoch is known).
    async fn lead<T: Cached>(
        self,
        ids: Vec<i32>,
        clock: Arc<FlightClock>,
        epoch: Option<u64>,
        tally: Arc<RequestTally>,
    ) -> Outcome<i32, T> {
        let _ = clock.query_started.set(Instant::now());
        let found = self.read_merged::<T>(ids.clone(), &tally).await?;
        if let Some(epoch) = epoch {
            self.hooks().before_fill(T::KIND).await;
            let cache = self.cache();
            let fills = ids
                .iter()
                .filter_map(|id| {
                    let key = cache.keys.item(T::KIND, *id);
                    Some(match found.get(id) {
                        Some(row) => Fill {
                            key,
                            version: row.version(),
                            payload: entry::value(
                                row.version(),
                                epoch,
                                &serde_json::to_string(row).ok()?,
                            ),
                            ttl: cache.jittered(T::ttl(&cache.ttls)),
                        },
                        None => Fill {
                            key,
                            version: 0,
                            payload: entry::absent(epoch),
                            ttl: cache.jittered(cache.ttls.absent),
                        },
                    })
                })
                .collect();
            cache.fill(T::KIND, fills, &tally).await;
        }
        Ok(found)
    }

    /// Pages of `products(...)` for several queries at once (a DataLoader batch).
    pub async fn product_pages(
        &self,
        queries: &[ProductQuery],
        tally: &Arc<RequestTally>,
    ) -> Result<HashMap<ProductQuery, ListPage>, AppError> {
        let wanted = queries
            .iter()
            .map(|q| Wanted {
                name: list_name(q),
                counters: lists::page_counters(q),
                spec: q.clone(),
            })
            .collect();
        let pages = self.lists::<ListPage>(wanted, tally).await?;
        Ok(queries.iter().cloned().zip(pages).collect())
    }

    /// Every category id in name order with its product count.
    pub async fn category_counts(
        &self,
        tally: &Arc<RequestTally>,
    ) -> Result<CategoryCounts, AppError> {
        let wanted = Wanted {
            name: "categories".to_string(),
            counters: vec![lists::CATEGORIES.to_string()],
            spec: (),
        };
        let mut pages = self.lists::<CategoryCounts>(vec![wanted], tally).await?;
        Ok(pages.remove(0))
    }
}
