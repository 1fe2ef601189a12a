//! The `cacheStats` view: counters per entity kind, totals, and the backend's state.
use async_graphql::SimpleObject;

use crate::catalog::{Catalog, KindSnapshot};

/// Counters for one kind of cache entry.
#[derive(SimpleObject)]
pub struct EntityCacheStats {
    /// `product`, `category`, `list`, or `response` (whole answers replayed by the
    /// response cache; not part of the totals).
    pub kind: String,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses), 0 when nothing was looked up.
    pub hit_rate: f64,
    /// Cache commands that failed or timed out (served from the database).
    pub errors: u64,
    /// Entries written after a database read.
    pub fills: u64,
    /// Fills refused because a newer version or a tombstone was there.
    pub fills_rejected: u64,
    /// Tombstones written (items) or generation bumps (lists) after commits.
    pub invalidations: u64,
}

impl From<KindSnapshot> for EntityCacheStats {
    fn from(s: KindSnapshot) -> Self {
        Self {
            kind: s.kind.into(),
            hit_rate: s.hit_rate(),
            hits: s.hits,
            misses: s.misses,
            errors: s.errors,
            fills: s.fills,
            fills_rejected: s.fills_rejected,
            invalidations: s.invalidations,
        }
    }
}

/// Facts about the Redis server (null on other backends or when unreachable).
#[derive(SimpleObject)]
pub struct RedisServerInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
}

#[derive(SimpleObject)]
pub struct CacheStatsView {
    /// `redis`, `memory` or `none`.
    pub backend: String,
    /// Whether the backend can be reached now.
    pub connected: bool,
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub errors: u64,
    /// Per kind: `product`, `category`, `list`, `response`.
    pub entities: Vec<EntityCacheStats>,
    pub redis: Option<RedisServerInfo>,
    /// SQL statements this process sent for reads since start.
    pub sql_statements: u64,
}

impl CacheStatsView {
    pub async fn read(catalog: &Catalog) -> Self {
        let kinds = catalog.cache_counters();
        let total = kinds.iter().filter(|k| k.kind != "response").fold(
            KindSnapshot::default(),
            |mut t, k| {
                t.hits += k.hits;
                t.misses += k.misses;
                t.errors += k.errors;
                t
            },
        );
        let redis = catalog.redis_info().await.map(|i| RedisServerInfo {
            version: i.version,
            used_memory_bytes: i.used_memory_bytes,
            connected_clients: i.connected_clients,
        });
        Self {
            backend: catalog.cache_status().backend.into(),
            connected: catalog.cache_status().connected,
            hits: total.hits,
            misses: total.misses,
            hit_rate: total.hit_rate(),
            errors: total.errors,
            entities: kinds.into_iter().map(Into::into).collect(),
            redis,
            sql_statements: catalog.sql_total(),
        }
    }
}
