//! Cache counters: process-wide totals per entity kind (for `cacheStats`), and the
//! per-request tally behind `extensions.cache` and the `x-cache` header. Plain atomics
//! with relaxed ordering: these are counters, nobody synchronises on them.
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

/// What a cache entry describes; also the label of every counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Product,
    Category,
    List,
    /// Whole responses replayed by the response cache (`transport::responses`).
    Response,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Product, Kind::Category, Kind::List, Kind::Response];
    /// The kinds of entity entries (what `cacheStats` totals count).
    pub const ENTITIES: [Kind; 3] = [Kind::Product, Kind::Category, Kind::List];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Product => "product",
            Kind::Category => "category",
            Kind::List => "list",
            Kind::Response => "response",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Totals for one kind since start (or the last reset).
#[derive(Default)]
pub struct KindCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Cache commands that failed or timed out (each counted as misses too).
    pub errors: AtomicU64,
    /// Entries written by readers after a database load.
    pub fills: AtomicU64,
    /// Fills the cache refused because a newer version or a tombstone was there.
    pub fills_rejected: AtomicU64,
    /// Tombstones written (items) or generation bumps (lists) after a commit.
    pub invalidations: AtomicU64,
}

/// A countable cache event; also the `event` label of `cache_events_total`.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Hit,
    Miss,
    Error,
    Fill,
    FillRejected,
    Invalidation,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Hit => "hit",
            Event::Miss => "miss",
            Event::Error => "error",
            Event::Fill => "fill",
            Event::FillRejected => "fill_rejected",
            Event::Invalidation => "invalidation",
        }
    }
}

/// A copy of one kind's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct KindSnapshot {
    pub kind: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub fills: u64,
    pub fills_rejected: u64,
    pub invalidations: u64,
}

impl KindSnapshot {
    /// Hits over lookups, 0 when there were none.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Process-wide cache counters.
#[derive(Default)]
pub struct CacheStats {
    kinds: [KindCounters; 4],
}

impl CacheStats {
    pub fn kind(&self, kind: Kind) -> &KindCounters {
        &self.kinds[kind.index()]
    }

    /// Counts `n` events: in these counters (for `cacheStats`, resettable) and in the
    /// Prometheus counters (monotonic, never reset).
    pub fn add(&self, kind: Kind, event: Event, n: u64) {
        if n == 0 {
            return;
        }
        let c = self.kind(kind);
        let counter = match event {
            Event::Hit => &c.hits,
            Event::Miss => &c.misses,
            Event::Error => &c.errors,
            Event::Fill => &c.fills,
            Event::FillRejected => &c.fills_rejected,
            Event::Invalidation => &c.invalidations,
        };
        counter.fetch_add(n, Relaxed);
        crate::metrics::cache_event(kind.as_str(), event.as_str(), n);
    }

    pub fn snapshot(&self) -> Vec<KindSnapshot> {
        Kind::ALL
            .iter()
            .map(|&k| {
                let c = self.kind(k);
                KindSnapshot {
                    kind: k.as_str(),
                    hits: c.hits.load(Relaxed),
                    misses: c.misses.load(Relaxed),
                    errors: c.errors.load(Relaxed),
                    fills: c.fills.load(Relaxed),
                    fills_rejected: c.fills_rejected.load(Relaxed),
                    invalidations: c.invalidations.load(Relaxed),
                }
            })
            .collect()
    }

    pub fn reset(&self) {
        for c in &self.kinds {
            for a in [
                &c.hits,
                &c.misses,
                &c.errors,
                &c.fills,
                &c.fills_rejected,
                &c.invalidations,
            ] {
                a.store(0, Relaxed);
            }
        }
    }
}

/// One request's view: what `extensions.cache` reports, and the stamps its reads
/// depended on (for the response cache).
#[derive(Default)]
pub struct RequestTally {
    hits: [AtomicU64; 4],
    misses: [AtomicU64; 4],
    /// The stamps of every cache read of this request.
    pub stamps: super::stamps::Recorder,
    /// Cache commands sent (a pipeline or script counts once).
    pub round_trips: AtomicU64,
    /// SQL statements sent to the database.
    pub sql_statements: AtomicU64,
    /// Statements this request's reads have claimed (`reserve_sql`), and the most they
    /// may claim (0: no limit, for reads of the server's own).
    sql_claimed: AtomicU64,
    sql_limit: AtomicU64,
    /// What the trust lease did to this request (`WITHHELD`, `UNCOVERED`).
    lease: AtomicU8,
}

/// Some read of this request found no trust lease.
const WITHHELD: u8 = 1;
/// Some answer came from the cache without a lease, after the database failed it: not
/// covered by the promise.
const UNCOVERED: u8 = 2;

impl RequestTally {
    pub fn hit(&self, kind: Kind, n: u64) {
        self.hits[kind.index()].fetch_add(n, Relaxed);
    }

    pub fn miss(&self, kind: Kind, n: u64) {
        self.misses[kind.index()].fetch_add(n, Relaxed);
    }

    pub fn round_trip(&self) {
        self.round_trips.fetch_add(1, Relaxed);
    }

    pub fn sql(&self) {
        self.sql_statements.fetch_add(1, Relaxed);
    }

    /// A tally whose reads may claim at most `limit` SQL statements.
    pub fn with_sql_limit(limit: usize) -> Self {
        let t = Self::default();
        t.sql_limit.store(limit as u64, Relaxed);
        t
    }

    /// The most SQL statements this request may cause (0: no limit).
    pub fn sql_limit(&self) -> usize {
        self.sql_limit.load(Relaxed) as usize
    }

    /// Claims `n` statements before a read that may run them leads one; `false` (and
    /// nothing claimed) when that would pass the request's limit.
    pub fn reserve_sql(&self, n: usize) -> bool {
        let limit = self.sql_limit.load(Relaxed);
        let before = self.sql_claimed.fetch_add(n as u64, Relaxed);
        if limit > 0 && before + n as u64 > limit {
            self.sql_claimed.fetch_sub(n as u64, Relaxed);
            return false;
        }
        true
    }

    /// A read of this request found no trust lease: if the database then fails it,
    /// `Cache::read_uncovered` may answer.
    pub fn lacked_lease(&self) {
        self.lease.fetch_or(WITHHELD, Relaxed);
    }

    pub fn lacked_a_lease(&self) -> bool {
        self.lease.load(Relaxed) & WITHHELD != 0
    }

    /// Part of the answer came from the cache without the lease's cover.
    pub fn uncovered(&self) {
        self.lease.fetch_or(UNCOVERED, Relaxed);
        self.stamps.unusable();
    }

    /// Whether part of the answer is not covered by the promise (`extensions.cache`
    /// says `covered: false`).
    pub fn is_uncovered(&self) -> bool {
        self.lease.load(Relaxed) & UNCOVERED != 0
    }

    pub fn hits(&self, kind: Kind) -> u64 {
        self.hits[kind.index()].load(Relaxed)
    }

    pub fn misses(&self, kind: Kind) -> u64 {
        self.misses[kind.index()].load(Relaxed)
    }

    /// Where the answer came from: `cache`, `database`, `both`, or `none` (no lookups).
    pub fn source(&self) -> &'static str {
        let hits: u64 = Kind::ALL.iter().map(|&k| self.hits(k)).sum();
        let misses: u64 = Kind::ALL.iter().map(|&k| self.misses(k)).sum();
        let sql = self.sql_statements.load(Relaxed);
        match (hits > 0, misses > 0 || sql > 0) {
            (true, false) => "cache",
            (false, true) => "database",
            (true, true) => "both",
            (false, false) => "none",
        }
    }

    /// The `x-cache` header: HIT, MISS, PARTIAL, or BYPASS when no cache was consulted.
    pub fn header(&self) -> &'static str {
        match self.source() {
            "cache" => "HIT",
            "database" if self.round_trips.load(Relaxed) == 0 => "BYPASS",
            "database" => "MISS",
            "both" => "PARTIAL",
            _ => "BYPASS",
        }
    }

    /// The `extensions.cache` object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.json()).unwrap_or_default()
    }

    /// The `extensions.cache` object as JSON text, written directly: this runs on every
    /// answer, replays included, where building a `serde_json::Value` cost more than
    /// the rest of the body.
    pub fn json(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(200);
        if self.is_uncovered() {
            // Sorted first; present only when true, so every covered answer reads as
            // before.
            out.push_str("{\"covered\":false,\"");
        }
        // Keys in sorted order, as a serde_json map would print them.
        const SORTED: [Kind; 4] = [Kind::Category, Kind::List, Kind::Product, Kind::Response];
        for (i, (name, counts)) in [("hits", &self.hits), ("misses", &self.misses)]
            .into_iter()
            .enumerate()
        {
            out.push_str(match (i, self.is_uncovered()) {
                (0, false) => "{\"",
                (0, true) => "",
                _ => ",\"",
            });
            out.push_str(name);
            out.push_str("\":{");
            for (j, k) in SORTED.iter().enumerate() {
                let sep = if j == 0 { "" } else { "," };
                let n = counts[k.index()].load(Relaxed);
                let _ = write!(out, "{sep}\"{}\":{n}", k.as_str());
            }
            out.push('}');
        }
        let _ = write!(
            out,
            ",\"roundTrips\":{},\"source\":\"{}\",\"sqlStatements\":{}}}",
            self.round_trips.load(Relaxed),
            self.source(),
            self.sql_statements.load(Relaxed),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tally_json_is_the_object_it_describes() {
        let t = RequestTally::default();
        t.hit(Kind::Product, 2);
        t.miss(Kind::Category, 1);
        t.round_trip();
        t.sql();
        let v: serde_json::Value = serde_json::from_str(&t.json()).expect("valid JSON");
        assert_eq!(
            v,
            serde_json::json!({
                "hits": { "category": 0, "list": 0, "product": 2, "response": 0 },
                "misses": { "category": 1, "list": 0, "product": 0, "response": 0 },
                "roundTrips": 1,
                "sqlStatements": 1,
                "source": "both",
            })
        );
        assert_eq!(t.to_json(), v);
        t.uncovered();
        let v: serde_json::Value = serde_json::from_str(&t.json()).expect("valid JSON");
        assert_eq!(v["covered"], false);
        assert_eq!(v["roundTrips"], 1);
    }

    #[test]
    fn sql_claims_stop_at_the_limit_and_a_refused_claim_takes_nothing() {
        let t = RequestTally::with_sql_limit(5);
        assert!(t.reserve_sql(2) && t.reserve_sql(2));
        assert!(!t.reserve_sql(2), "would be 6");
        assert!(t.reserve_sql(1), "5 is allowed");
        assert!(!t.reserve_sql(1));
        assert!(RequestTally::default().reserve_sql(1_000_000), "no limit");
    }
}
