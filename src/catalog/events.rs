//! Product changes for subscriptions. A write publishes its change on the cache's feed
//! (`cache::feed`) only after its commit and its invalidation were delivered, so a
//! subscriber that reacts by querying never reads the old value; an invalidation the
//! outbox delivers later publishes its change then. Each instance relays what it hears
//! to its own subscribers as one shared `Change` per event: the product an event names
//! is read once per instance (`Change::product`), however many subscribers it has.
//!
//! The guarantee: at most once per subscription; per product in `version` order (the
//! relay drops a version it has already passed, see `Seen`); and never silence
//! after a loss: if the feed drops, every live subscription is told (`Live::Lost`). A
//! publish that fails after its commit is lost: counted
//! (`subscription_events_lost_total`) and logged.
use std::sync::Arc;

use tokio::sync::{OnceCell, broadcast};

use super::{Catalog, model::Product, written::Written};
use crate::{
    cache::{RequestTally, feed::Heard},
    error::AppError,
};

/// Changes a slow subscriber may fall behind before it is dropped.
const BACKLOG: usize = 256;

/// Attempts to publish one change.
const PUBLISH_TRIES: u32 = 3;

/// Products whose highest relayed version an instance remembers (duplicates and late
/// older changes of them are dropped once, here, for all its subscribers).
const TRACKED: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One change of one product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: ChangeKind,
    pub id: i32,
    /// The product's version after the change; for a deletion its last version + 1.
    pub version: i64,
}

impl Event {
    pub fn of(w: &Written) -> Option<Self> {
        let kind = match (w.gone, w.version) {
            (true, _) => ChangeKind::Deleted,
            (false, 1) => ChangeKind::Created,
            (false, _) => ChangeKind::Updated,
        };
        (w.product_id > 0).then_some(Self {
            kind,
            id: w.product_id,
            version: w.version,
        })
    }

    /// `C|U|D:<id>:<version>`, the feed's message.
    fn encode(&self) -> String {
        let k = match self.kind {
            ChangeKind::Created => 'C',
            ChangeKind::Updated => 'U',
            ChangeKind::Deleted => 'D',
        };
        format!("{k}:{}:{}", self.id, self.version)
    }

    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let kind = match parts.next()? {
            "C" => ChangeKind::Created,
            "U" => ChangeKind::Updated,
            "D" => ChangeKind::Deleted,
            _ => return None,
        };
        let id = parts.next()?.parse().ok()?;
        let version = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self { kind, id, version })
    }
}

/// A change as this instance's subscribers receive it.
pub struct Change {
    pub event: Event,
    product: OnceCell<Option<Product>>,
}

impl Change {
    /// The product as it is now (not older than the event), read once for every
    /// subscriber of this instance; `None` for a deletion or a product gone since.
    pub async fn product(&self, catalog: &Catalog) -> Result<Option<Product>, AppError> {
        if self.event.kind == ChangeKind::Deleted {
            return Ok(None);
        }
        self.product
            .get_or_try_init(|| async {
                let tally = Arc::new(RequestTally::default());
                let id = self.event.id;
                let found = catalog.products(&[id], &tally).await?.remove(&id);
                match found {
                    // The invalidation was delivered before the event was sent, so the
                    // cache cannot hold an older row; if it did, ask the database.
                    Some(p) if i64::from(p.version) < self.event.version => Ok(catalog
                        .without_cache()
                        .products(&[id], &tally)
                        .await?
                        .remove(&id)),
                    found => Ok(found),
                }
            })
            .await
            .cloned()
    }
}

/// What a subscriber hears.
#[derive(Clone)]
pub enum Live {
    Change(Arc<Change>),
    /// Changes may have been missed (the feed dropped): the subscription must end.
    Lost,
}

/// The relay's memory: the highest version relayed of each product, so a duplicate or
/// an older change arriving late is dropped once for every subscriber of the instance.
/// Bounded by `TRACKED` products, the least recently changed forgotten first (a late
/// duplicate of a product not changed for that long is all that could slip through).
pub struct Seen(moka::sync::Cache<i32, i64>);

impl Default for Seen {
    fn default() -> Self {
        Self(moka::sync::Cache::new(TRACKED))
    }
}

impl Seen {
    /// Whether `event` is news (and remembers it).
    pub fn is_new(&mut self, event: &Event) -> bool {
        if self.0.get(&event.id).is_some_and(|v| v >= event.version) {
            return false;
        }
        self.0.insert(event.id, event.version);
        true
    }
}

/// The relay of this instance: what the feed hears, as shared changes.
pub struct Relay {
    tx: broadcast::Sender<Live>,
}

impl Default for Relay {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl Catalog {
    /// Subscribes to this instance's changes, or `None` while the feed is down (a
    /// subscription would miss changes without knowing).
    pub fn changes(&self) -> Option<broadcast::Receiver<Live>> {
        self.cache()
            .feed
            .is_up()
            .then(|| self.inner.relay.tx.subscribe())
    }

    /// Relays the feed to this instance's subscribers, for the life of the app.
    pub fn spawn_change_relay(&self) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        let mut heard = self.cache().feed.listen();
        let mut seen = Seen::default();
        tokio::spawn(async move {
            loop {
                let live = match heard.recv().await {
                    Ok(Heard::Message(text)) => match Event::decode(&text) {
                        Some(event) if seen.is_new(&event) => Live::Change(Arc::new(Change {
                            event,
                            product: OnceCell::new(),
                        })),
                        _ => continue,
                    },
                    // Missed messages here are missed by every subscriber.
                    Ok(Heard::Lost) | Err(broadcast::error::RecvError::Lagged(_)) => Live::Lost,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let _ = catalog.inner.relay.tx.send(live);
            }
        })
    }

    /// Publishes the changes of delivered writes (see the module header), each tried a
    /// few times (a command timeout is not a lost Redis).
    pub(super) async fn publish(&self, written: &[Written]) {
        for event in written.iter().filter_map(Event::of) {
            let mut tries = 0;
            while let Err(e) = self.cache().feed.publish(event.encode()).await {
                tries += 1;
                if tries == PUBLISH_TRIES {
                    crate::metrics::subscription_event_lost();
                    tracing::warn!(error = %e, product = event.id, "a product change was not published; subscribers miss it");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        let e = Event {
            kind: ChangeKind::Deleted,
            id: 42,
            version: 7,
        };
        assert_eq!(Event::decode(&e.encode()), Some(e));
        for bad in ["", "X:1:2", "U:1", "U:a:2", "U:1:2:3"] {
            assert_eq!(Event::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_subscription_drops_duplicates_and_older_versions() {
        let mut seen = Seen::default();
        let at = |id, version| Event {
            kind: ChangeKind::Updated,
            id,
            version,
        };
        assert!(seen.is_new(&at(1, 2)));
        assert!(!seen.is_new(&at(1, 2)), "duplicate");
        assert!(!seen.is_new(&at(1, 1)), "older, late");
        assert!(seen.is_new(&at(1, 3)));
        assert!(seen.is_new(&at(2, 1)), "another product");
    }
}
