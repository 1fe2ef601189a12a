//! The list protocol, shared by every list (`products(...)` pages, the `categories`
//! counts). One round trip reads the asked pages and every list counter they depend on
//! (`lists::page_counters`). A page is a hit when it is tagged with the current value of
//! each of its counters and the current epoch. Misses go through single-flight (joined
//! by requests that saw the same counter values) to SQL, and the leader stores each page
//! tagged with the counter values it read *before* its SQL ran. A write bumps the
//! counters after its commit and before it returns, so a stored page is never older
//! than its tag, and a page built before a write's commit can never match the values
//! that write left. Reads the trust lease kept from the cache go to the database; if it
//! fails them, the cache may still answer, marked as not covered (`uncovered_lists`).
use std::{collections::HashMap, sync::Arc, time::Instant};

use futures::{FutureExt, StreamExt};
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Catalog,
    flight::{self, FlightClock, Flights, LoadFailure, Outcome, Seen},
    model::{CategoryCounts, ListPage, ProductQuery},
};
use crate::{
    cache::{
        Event, Kind, RequestTally,
        entry::{self, Entry},
    },
    db::queries,
    error::AppError,
};

/// A list the cache holds: its flights and how to compute one from the database.
pub trait CachedList: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What names one list (its normalised arguments).
    type Spec: Clone + Send + Sync + 'static;
    /// SQL statements `from_db` runs for one list.
    const STATEMENTS: usize;
    fn flights(catalog: &Catalog) -> &Flights<String, Built<Self>>;
    fn from_db(
        catalog: &Catalog,
        spec: &Self::Spec,
        tally: &RequestTally,
    ) -> impl Future<Output = Result<Self, AppError>> + Send;
}

/// One asked list: its cache name, the counters it depends on, its arguments.
pub struct Wanted<S> {
    pub name: String,
    pub counters: Vec<String>,
    pub spec: S,
}

/// A list a flight computed, with the counter values read before its SQL (`None` when
/// the cache did not answer them): what a follower records as its stamps.
#[derive(Clone)]
pub struct Built<P> {
    page: P,
    tags: Option<Vec<u64>>,
}

impl CachedList for ListPage {
    type Spec = ProductQuery;
    /// The page's ids, and the count (only the count for `first: 0`).
    const STATEMENTS: usize = 2;
    fn flights(catalog: &Catalog) -> &Flights<String, Built<Self>> {
        &catalog.inner.page_flights
    }
    async fn from_db(
        catalog: &Catalog,
        q: &ProductQuery,
        tally: &RequestTally,
    ) -> Result<Self, AppError> {
        let total = catalog
            .read_sql(tally, queries::product_count(catalog.db(), &q.filter))
            .await?;
        // `first: 0` from the start asks only for the count (`totalCount`, and
        // `hasNextPage` follows from it): one statement.
        let (ids, has_next) = match (q.first, &q.after) {
            (0, None) => (Vec::new(), total > 0),
            _ => {
                catalog
                    .read_sql(tally, queries::product_page_ids(catalog.db(), q))
                    .await?
            }
        };
        Ok(ListPage {
            ids,
            total,
            has_next,
        })
    }
}

impl CachedList for CategoryCounts {
    type Spec = ();
    const STATEMENTS: usize = 1;
    fn flights(catalog: &Catalog) -> &Flights<String, Built<Self>> {
        &catalog.inner.counts_flights
    }
    async fn from_db(catalog: &Catalog, _: &(), tally: &RequestTally) -> Result<Self, AppError> {
        let rows = catalog
            .read_sql(tally, queries::category_counts(catalog.db()))
            .await?;
        Ok(CategoryCounts {
            entries: rows
                .into_iter()
                .map(|(id, n)| (id, n.max(0) as u64))
                .collect(),
        })
    }
}

/// Pages one list flight reads from the database at once (each statement still waits
/// for a read slot): a request asking for many pages does not queue them one by one,
/// nor take every slot.
const PAGES_AT_ONCE: usize = 4;

/// A page a leader computed: its key, its job, and the page (or why not).
type Computed<P> = (String, Job<<P as CachedList>::Spec>, Result<P, AppError>);

/// What a leader needs of one page it computes.
struct Job<S> {
    spec: S,
    tags: Option<Vec<u64>>,
    /// Whether the page's key held something (storing it creates no new key).
    existed: bool,
}

impl Catalog {
    /// Reads `wanted` lists through the cache, in the order asked.
    pub(super) async fn lists<P: CachedList>(
        &self,
        wanted: Vec<Wanted<P::Spec>>,
        tally: &Arc<RequestTally>,
    ) -> Result<Vec<P>, AppError> {
        let start = Instant::now();
        let cache = self.cache();
        let keys: Vec<String> = wanted.iter().map(|w| cache.keys.list(&w.name)).collect();
        // Every counter once; per page, the positions of its counters.
        let mut counter_keys: Vec<String> = Vec::new();
        let deps: Vec<Vec<usize>> = wanted
            .iter()
            .zip(&keys)
            .map(|(w, page)| {
                w.counters
                    .iter()
                    .map(|c| {
                        // The copy in the page's own group: one command per group.
                        let key = cache.keys.counter_of(page, c);
                        match counter_keys.iter().position(|k| *k == key) {
                            Some(i) => i,
                            None => {
                                counter_keys.push(key);
                                counter_keys.len() - 1
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        let mut snapshot = cache.read(Kind::List, &keys, &counter_keys, tally).await;
        if let Some(s) = &mut snapshot {
            // Missing, not lost: a lost counter's group is not read (nor seeded) now.
            let missing: Vec<usize> = (0..counter_keys.len())
                .filter(|&j| s.counters[j].is_none() && !s.counter_lost(j))
                .collect();
            seed_missing(cache, &counter_keys, missing, &mut s.counters, tally).await;
        }
        let stamps = &tally.stamps;
        if let Some(s) = &snapshot {
            stamps.saw(s.epoch);
        }
        let tags_of = |i: usize| -> Option<Vec<u64>> {
            let s = snapshot.as_ref()?;
            // A page of a group that is down or not trusted: nothing is known of it.
            if s.value_lost(i) || deps[i].iter().any(|&j| s.counter_lost(j)) {
                return None;
            }
            deps[i].iter().map(|&j| s.counters[j]).collect()
        };
        let record = |i: usize, tags: Option<&Vec<u64>>| match tags {
            Some(tags) => {
                for (&j, &v) in deps[i].iter().zip(tags) {
                    stamps.counter(&counter_keys[j], v);
                }
                stamps.list();
            }
            None => stamps.unusable(),
        };
        let mut out: Vec<Option<P>> = Vec::with_capacity(wanted.len());
        let mut jobs: HashMap<String, Job<P::Spec>> = HashMap::new();
        let mut missed: Vec<(String, Seen)> = Vec::new();
        for (i, w) in wanted.into_iter().enumerate() {
            let tags = tags_of(i);
            let hit = match (&snapshot, &tags) {
                (Some(s), Some(t)) => match s.values[i].as_deref().and_then(Entry::parse) {
                    Some(Entry::List { tags, epoch, data })
                        if epoch == s.epoch && tags == entry::tags(t) =>
                    {
                        serde_json::from_str::<P>(data).ok()
                    }
                    _ => None,
                },
                _ => None,
            };
            if hit.is_some() {
                record(i, tags.as_ref());
            } else {
                let seen = snapshot
                    .as_ref()
                    .zip(tags.as_ref())
                    .map(|(s, t)| flight::seen(s.epoch, t));
                missed.push((keys[i].clone(), seen));
                let existed = snapshot.as_ref().is_some_and(|s| s.values[i].is_some());
                jobs.insert(
                    keys[i].clone(),
                    Job {
                        spec: w.spec,
                        tags,
                        existed,
                    },
                );
            }
            out.push(hit);
        }
        let misses = missed.len() as u64;
        let hits = out.len() as u64 - misses;
        cache.stats.add(Kind::List, Event::Hit, hits);
        cache.stats.add(Kind::List, Event::Miss, misses);
        if cache.is_enabled() {
            tally.hit(Kind::List, hits);
            tally.miss(Kind::List, misses);
        }
        if !missed.is_empty() {
            let epoch = snapshot.as_ref().map(|s| s.epoch);
            let (catalog, leader_tally) = (self.clone(), tally.clone());
            let built = P::flights(self)
                .load(&missed, start, move |led, clock| {
                    leader_tally
                        .reserve_sql(led.len() * P::STATEMENTS)
                        .then(|| {
                            catalog
                                .lead_lists::<P>(led, jobs, epoch, clock, leader_tally)
                                .boxed()
                        })
                })
                .await;
            let built = match built {
                Ok(built) => built,
                Err(f) => {
                    let e = f.into_error("a list", tally);
                    // The lease sent these reads to the database, and it failed them.
                    if tally.lacked_a_lease()
                        && matches!(e, AppError::Unavailable | AppError::Overloaded)
                        && let Some(pages) = self
                            .uncovered_lists::<P>(&keys, &counter_keys, &deps, tally)
                            .await
                    {
                        return Ok(pages);
                    }
                    return Err(e);
                }
            };
            for (i, slot) in out.iter_mut().enumerate() {
                if slot.is_none() {
                    let b = built
                        .get(&keys[i])
                        .ok_or_else(|| AppError::Internal("a list flight lost a page".into()))?;
                    record(i, b.tags.as_ref());
                    *slot = Some(b.page.clone());
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Every asked page as the cache holds it, read without the trust lease after the
    /// database failed the read it sent there: each a hit (tagged with its counters'
    /// current values, under the current epoch), or `None`. Not covered by the promise;
    /// the tally says so.
    async fn uncovered_lists<P: CachedList>(
        &self,
        keys: &[String],
        counter_keys: &[String],
        deps: &[Vec<usize>],
        tally: &RequestTally,
    ) -> Option<Vec<P>> {
        let cache = self.cache();
        let s = cache
            .read_uncovered(Kind::List, keys, counter_keys, tally)
            .await?;
        let mut pages = Vec::with_capacity(keys.len());
        for (i, deps) in deps.iter().enumerate() {
            if s.value_lost(i) || deps.iter().any(|&j| s.counter_lost(j)) {
                return None;
            }
            let tags: Vec<u64> = deps.iter().map(|&j| s.counters[j]).collect::<Option<_>>()?;
            match s.values[i].as_deref().and_then(Entry::parse)? {
                Entry::List {
                    tags: t,
                    epoch,
                    data,
                } if epoch == s.epoch && t == entry::tags(&tags) => {
                    pages.push(serde_json::from_str::<P>(data).ok()?)
                }
                _ => return None,
            }
        }
        cache.stats.add(Kind::List, Event::Hit, pages.len() as u64);
        tally.hit(Kind::List, pages.len() as u64);
        Some(pages)
    }

    /// A list flight's work: each led page from SQL (a few at once, each statement within
    /// the read bound), then one write of those that have tags (the counter values read
    /// before the SQL).
    async fn lead_lists<P: CachedList>(
        self,
        led: Vec<String>,
        mut jobs: HashMap<String, Job<P::Spec>>,
        epoch: Option<u64>,
        clock: Arc<FlightClock>,
        tally: Arc<RequestTally>,
    ) -> Outcome<String, Built<P>> {
        let _ = clock.query_started.set(Instant::now());
        let work: Vec<(String, Job<P::Spec>)> = led
            .into_iter()
            .filter_map(|key| jobs.remove(&key).map(|job| (key, job)))
            .collect();
        let (this, tally_ref) = (&self, &tally);
        let pages: Vec<Computed<P>> = futures::stream::iter(work)
            .map(|(key, job)| async move {
                let page = P::from_db(this, &job.spec, tally_ref).await;
                (key, job, page)
            })
            .buffered(PAGES_AT_ONCE)
            .collect()
            .await;
        let mut built = HashMap::with_capacity(pages.len());
        let mut fills = Vec::new();
        for (key, job, page) in pages {
            let page = match page {
                Ok(page) => page,
                Err(AppError::Unavailable) => return Err(LoadFailure::Unavailable),
                Err(AppError::Overloaded) => return Err(LoadFailure::Overloaded),
                Err(e) => {
                    tracing::error!(error = ?e, "database read of a list failed");
                    return Err(LoadFailure::Internal);
                }
            };
            if let (Some(epoch), Some(tags), Ok(json)) =
                (epoch, &job.tags, serde_json::to_string(&page))
            {
                let page = entry::list(&entry::tags(tags), epoch, &json);
                fills.push((key.clone(), page, job.existed));
            }
            built.insert(
                key,
                Built {
                    page,
                    tags: job.tags,
                },
            );
        }
        if epoch.is_some() {
            self.hooks().before_fill(Kind::List).await;
            self.cache().put_lists(fills, &tally).await;
        }
        Ok(Arc::new(built))
    }
}

/// Counters a read found missing (a new or flushed Redis) get their start values before
/// any SQL runs, so the values read back are valid tags for this read's pages.
async fn seed_missing(
    cache: &crate::cache::Cache,
    keys: &[String],
    missing: Vec<usize>,
    values: &mut [Option<u64>],
    tally: &RequestTally,
) {
    if missing.is_empty() {
        return;
    }
    let names: Vec<String> = missing.iter().map(|&i| keys[i].clone()).collect();
    if let Some(seeded) = cache.seed_counters(&names, tally).await {
        for (&i, v) in missing.iter().zip(seeded) {
            values[i] = v;
        }
    }
}
