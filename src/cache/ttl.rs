//! How long entries live: every TTL gets a random spread (entries filled together expire
//! apart), a writer's tombstone only a positive one and never less than a floor (it must
//! outlive any fill still in flight with an older row), a list counter a day (renewed by
//! each bump).
use std::time::Duration;

use super::Cache;

/// How long a list counter lives without being bumped or seeded again. Expiry is safe:
/// a counter that comes back is seeded with a fresh random value, which no stored page
/// carries as its tag (a page tagged with the old value misses once).
pub const COUNTER_TTL: Duration = Duration::from_secs(24 * 3600);

/// The shortest life of a tombstone (see `Cache::tombstone_ttl`).
pub const TOMBSTONE_FLOOR: Duration = Duration::from_secs(60);

impl Cache {
    /// The TTL of a writer's tombstone: the entry TTL with only positive jitter, and at
    /// least `TOMBSTONE_FLOOR`. A tombstone must outlive any fill still in flight that
    /// carries an older row (a reader that read the database just before the commit),
    /// so it never gets the shorter half of the spread, however short the entry TTL.
    pub fn tombstone_ttl(&self, entry_ttl: Duration) -> Duration {
        let spread = entry_ttl.as_millis() as u64 * u64::from(self.ttls.jitter_percent) / 100;
        let extra = if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        };
        (entry_ttl + Duration::from_millis(extra)).max(TOMBSTONE_FLOOR)
    }

    /// A TTL with +-`jitter_percent` random spread.
    pub fn jittered(&self, ttl: Duration) -> Duration {
        jitter(ttl, self.ttls.jitter_percent)
    }
}

/// Shared by every store: a TTL spread by +-`percent`, at least 1 ms.
pub fn jitter(ttl: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let ms = ttl.as_millis() as f64;
    let spread = ms * f64::from(percent) / 100.0;
    let value = ms + rand::random_range(-spread..=spread);
    Duration::from_millis(value.max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CacheBackendKind, CacheTtls};

    #[test]
    fn tombstones_never_live_shorter_than_their_entry_or_the_floor() {
        let cache = Cache::new(
            CacheBackendKind::None,
            None,
            "t:",
            CacheTtls {
                product: Duration::from_secs(600),
                category: Duration::from_secs(600),
                list: Duration::from_secs(300),
                absent: Duration::from_secs(60),
                jitter_percent: 10,
            },
            Duration::from_millis(100),
            Duration::from_millis(500),
            None,
            1,
        )
        .expect("a cache");
        for _ in 0..1000 {
            let t = cache.tombstone_ttl(Duration::from_secs(600));
            assert!(
                t >= Duration::from_secs(600) && t <= Duration::from_secs(660),
                "{t:?}"
            );
            assert!(cache.tombstone_ttl(Duration::from_secs(5)) >= TOMBSTONE_FLOOR);
        }
    }

    #[test]
    fn jitter_stays_within_its_percent() {
        let base = Duration::from_secs(600);
        for _ in 0..1000 {
            let j = jitter(base, 10);
            assert!(
                j >= Duration::from_secs(540) && j <= Duration::from_secs(660),
                "{j:?}"
            );
        }
        assert_eq!(jitter(base, 0), base);
    }
}
