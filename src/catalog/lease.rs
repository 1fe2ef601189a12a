//! The trust lease, the database side (the state is `cache::lease`). Reads of a shared
//! cache need a lease; this renews it, and makes a writer that could not deliver its
//! invalidation wait until no lease that might not know of it is left.
//!
//! **Renewal.** Every half lease (`Lease::period`) one query on a connection of its own
//! (`db::connect_one`, outside the pool that reads and writes share, so a Redis stall
//! that sends every read to Postgres cannot starve it) reads the cache layout Postgres
//! records and the outbox rows no lease may cover: undelivered and given up by their
//! writer, or undelivered and older than `listed_after` (a writer that died between
//! commit and delivery, or a delivered marker that was lost). The lease runs from the
//! moment the query was sent, for `CACHE_LEASE_MS`, and withholds the keys and list
//! counters those rows name (everything for a row that names no counters, or when more
//! than `MOST_LISTED` are listed). Rows being delivered right now are not listed: on the
//! healthy path every row is undelivered for a moment.
//!
//! **Giving up.** A writer whose invalidation Redis did not take within its patience
//! records that it gave up (`db::lease::give_up`) and answers only `Lease::wait` after
//! that record committed: every lease granted by a renewal sent before the record was
//! visible has expired by then, and every renewal sent after it lists the row. If the
//! record cannot be written either, the row's age lists it: the writer then waits
//! `listed_after` (at the clock-rate bound) plus `Lease::wait` from its commit.
//!
//! **Layouts.** Postgres records the one cache layout whose instances may use the cache
//! (`cache_layout`). An instance that finds an older one (or none) takes it over; the
//! record's time makes instances of the new layout wait until every lease of the old
//! one has expired (measured on the database's clock against itself). An instance that
//! finds another layout neither reads nor writes the cache: its reads go to the
//! database, and its writes give up at once, for the new layout's replayers to deliver.
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use sea_orm::DbErr;

use super::{Catalog, written::Written};
use crate::{
    cache::{
        Kind,
        lease::{CLOCK_RATE_BOUND, Off, Withheld, boot_now},
    },
    db::{entities::cache_outbox, lease as sql},
};

/// Most rows one renewal lists; a renewal that finds this many withholds everything.
const MOST_LISTED: u64 = 1_000;

impl Catalog {
    /// Undelivered rows older than this are listed though nobody gave them up: half a
    /// lease (as old as the replayers' grace, and far older than a delivery on the
    /// healthy path takes), so a writer that died is covered within a lease.
    fn listed_after(&self) -> Duration {
        self.cache().lease.length / 2
    }

    /// Renews the trust lease for the life of the app (shared cache only).
    pub fn spawn_lease_renewer(&self) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let mut said: Option<String> = None;
            loop {
                let lease = &catalog.cache().lease;
                let sent = boot_now();
                let started = Instant::now();
                let outcome = tokio::time::timeout(lease.length, catalog.renew(sent)).await;
                let ok = matches!(outcome, Ok(Ok(())));
                crate::metrics::lease_renewal(ok, started.elapsed().as_secs_f64());
                if let Ok(Err(e)) = &outcome {
                    catalog.log_once_a_second(|| {
                        tracing::warn!(error = %e, "trust lease renewal failed");
                    });
                }
                let now = catalog.cache().untrusted_reason();
                if now != said {
                    match &now {
                        Some(why) => tracing::warn!(reason = %why, "not answering from the cache"),
                        None => tracing::info!("trust lease held: answering from the cache"),
                    }
                    said = now;
                }
                let next = lease.period().saturating_sub(started.elapsed());
                tokio::time::sleep(next).await;
            }
        })
    }

    /// One renewal, sent at `sent` (`boot_now`).
    async fn renew(&self, sent: Duration) -> Result<(), DbErr> {
        let lease = &self.cache().lease;
        let db = self.lease_db();
        let mut r = sql::renew(db, self.listed_after(), lease.wait(), MOST_LISTED).await?;
        if r.layout.is_none_or(|l| l < lease.layout) {
            if sql::take_layout(db, lease.layout).await? {
                tracing::warn!(
                    from = ?r.layout,
                    to = lease.layout,
                    "took the cache layout over: instances of the old layout stop using the cache"
                );
            }
            r = sql::renew(db, self.listed_after(), lease.wait(), MOST_LISTED).await?;
        }
        match r.layout {
            Some(l) if l == lease.layout && r.settled => lease.grant(sent, self.withheld(&r.rows)),
            Some(l) if l == lease.layout => lease.refuse(Off::Settling),
            recorded => lease.refuse(Off::Layout {
                recorded,
                spoken: lease.layout,
            }),
        }
        Ok(())
    }

    /// What a lease may not cover while `rows` are listed.
    fn withheld(&self, rows: &[cache_outbox::Model]) -> Withheld {
        if rows.is_empty() {
            return Withheld::Nothing;
        }
        if rows.len() as u64 >= MOST_LISTED {
            return Withheld::All;
        }
        let cache = self.cache();
        let mut keys = HashSet::new();
        for row in rows {
            let w = Written::from(row);
            let Some(counters) = &w.counters else {
                return Withheld::All;
            };
            if w.product_id > 0 {
                keys.insert(cache.keys.item(Kind::Product, w.product_id));
            }
            if let Some(c) = w.new_category {
                keys.insert(cache.keys.item(Kind::Category, c));
            }
            for name in counters {
                for g in 0..cache.keys.groups() {
                    keys.insert(cache.keys.counter(g, name));
                }
            }
        }
        Withheld::Keys(keys)
    }

    /// A writer that did not see its invalidation (outbox row `id`) delivered, or may not
    /// answer on its delivery alone (no lease held when Redis took it): records that it
    /// gave up and waits until no lease granted before that record is left. `committed`
    /// is when its commit returned.
    pub(super) async fn give_up(&self, id: i64, committed: Instant) {
        let lease = &self.cache().lease;
        if lease.unchecked() {
            return;
        }
        let started = Instant::now();
        let recorded = tokio::time::timeout(lease.length, sql::give_up(self.db(), id)).await;
        let until = match recorded {
            Ok(Ok(())) => Instant::now() + lease.wait(),
            failed => {
                let e = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(error = %e, outbox = id, "could not record a given-up invalidation; waiting for its age to list it");
                committed + self.listed_after().mul_f64(CLOCK_RATE_BOUND) + lease.wait()
            }
        };
        tokio::time::sleep_until(until.into()).await;
        crate::metrics::lease_wait(started.elapsed().as_secs_f64());
    }

    /// Test-only, the protocol before the lease (the checker must catch it): reads
    /// ignore the lease and a writer that gave up answers at once.
    #[cfg(feature = "test-hooks")]
    pub fn set_naive_lease(&self, on: bool) {
        self.cache().lease.set_unchecked(on);
    }
}
