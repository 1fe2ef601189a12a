//! The change feed: messages every instance hears (`catalog::events` puts product
//! changes on it). With Redis it is one pub/sub channel (`<prefix>events`): published
//! through the cache's connection, heard through a subscriber connection of its own
//! (fred's `SubscriberClient`; on a Redis Cluster a classic `PUBLISH` reaches every
//! node). Without Redis it is a channel in the process.
//!
//! A subscriber connection that drops loses whatever is published until it has
//! subscribed again, so every drop is told to the listeners (`Heard::Lost`) instead of
//! going silent, and the feed counts as down until the subscription is back.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::SeqCst},
    },
    time::Duration,
};

use fred::{
    clients::SubscriberClient,
    prelude::*,
    types::config::{Config, ReconnectPolicy},
};
use tokio::sync::broadcast;

use super::CacheError;

/// Messages a slow listener may fall behind before it misses some (`Lagged`).
const BACKLOG: usize = 4096;

/// How often the subscriber connection is pinged: a half-open connection reports no
/// error by itself, and would leave the feed silent.
const PING_EVERY: Duration = Duration::from_secs(2);

/// The subscriber's life, for as long as the feed exists: subscribes after every
/// (re)connection, relays messages, and tells listeners `Lost` whenever messages may
/// have been missed: an error or a reconnect of the connection, a ping it did not answer
/// in time, or fred's own channel falling behind. The feed is up only while subscribed.
async fn listen_to(
    sub: SubscriberClient,
    channel: String,
    tx: broadcast::Sender<Heard>,
    up: Arc<AtomicBool>,
) {
    use broadcast::error::RecvError;
    let mut messages = sub.message_rx();
    let mut errors = sub.error_rx();
    let mut reconnects = sub.reconnect_rx();
    let lost = |why: &str| {
        if up.swap(false, SeqCst) {
            let _ = tx.send(Heard::Lost);
            tracing::warn!(
                why,
                "the change feed may have missed changes: live subscriptions end"
            );
        }
    };
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut backoff = Duration::from_millis(50);
    loop {
        if !up.load(SeqCst) && sub.is_connected() {
            match tokio::time::timeout(PING_EVERY, sub.subscribe(channel.as_str())).await {
                Ok(Ok(())) => {
                    up.store(true, SeqCst);
                    backoff = Duration::from_millis(50);
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        tokio::select! {
            m = messages.recv() => match m {
                Ok(m) => {
                    if let Some(text) = m.value.as_str() {
                        let _ = tx.send(Heard::Message(text.as_ref().into()));
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    lost("fell behind the subscriber connection");
                }
                Err(RecvError::Closed) => {
                    lost("the subscriber client closed");
                    return;
                }
            },
            e = errors.recv() => {
                if !matches!(e, Err(RecvError::Closed)) {
                    lost("the subscriber connection failed");
                }
            }
            r = reconnects.recv() => {
                if !matches!(r, Err(RecvError::Closed)) {
                    // A reconnect means a gap, even without an error seen.
                    lost("the subscriber connection reconnected");
                }
            }
            _ = ping.tick() => {
                if up.load(SeqCst) {
                    let answered = tokio::time::timeout(PING_EVERY, sub.ping::<fred::types::Value>(None)).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        lost("the subscriber connection did not answer a ping");
                        let _ = sub.force_reconnection().await;
                    }
                }
            }
        }
    }
}

/// What a listener hears.
#[derive(Clone, Debug)]
pub enum Heard {
    Message(Arc<str>),
    /// The feed lost its connection: messages may have been missed.
    Lost,
}

pub struct Feed {
    tx: broadcast::Sender<Heard>,
    redis: Option<RedisFeed>,
}

struct RedisFeed {
    /// Publishes (a plain client; subscribing puts a connection in a mode of its own).
    publisher: Client,
    /// Kept so its connection lives as long as the feed.
    _subscriber: SubscriberClient,
    channel: String,
    up: Arc<AtomicBool>,
    timeout: Duration,
}

impl Feed {
    /// A feed inside this process.
    pub fn local() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            redis: None,
        }
    }

    /// A feed on Redis channel `channel`; connects in the background.
    pub fn redis(url: &str, channel: String, timeout: Duration) -> Result<Self, CacheError> {
        let config = Config::from_url(url)?;
        let policy = ReconnectPolicy::new_exponential(0, 50, 2_000, 2);
        let publisher = Builder::from_config(config.clone())
            .set_policy(policy.clone())
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .build()?;
        let subscriber = Builder::from_config(config)
            .set_policy(policy)
            // fred's own event channels: a listener that falls this far behind misses
            // messages (and is told so, see `listen_to`).
            .with_performance_config(|p| p.broadcast_channel_capacity = BACKLOG)
            .build_subscriber_client()?;
        let (tx, _) = broadcast::channel(BACKLOG);
        let up = Arc::new(AtomicBool::new(false));
        let _connection = publisher.connect();
        let _subscription = subscriber.connect();
        tokio::spawn(listen_to(
            subscriber.clone(),
            channel.clone(),
            tx.clone(),
            up.clone(),
        ));
        Ok(Self {
            tx,
            redis: Some(RedisFeed {
                publisher,
                _subscriber: subscriber,
                channel,
                up,
                timeout,
            }),
        })
    }

    /// Whether a message published now reaches every listener (always in process).
    pub fn is_up(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.up.load(SeqCst))
    }

    /// Waits up to `limit` for the feed to be up.
    pub async fn wait_up(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_up() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens from now on.
    pub fn listen(&self) -> broadcast::Receiver<Heard> {
        self.tx.subscribe()
    }

    /// Sends `message` to every instance's listeners (this one's too).
    pub async fn publish(&self, message: String) -> Result<(), CacheError> {
        let Some(r) = &self.redis else {
            let _ = self.tx.send(Heard::Message(message.into()));
            return Ok(());
        };
        let publish = r
            .publisher
            .publish::<i64, _, _>(r.channel.as_str(), message);
        match tokio::time::timeout(r.timeout, publish).await {
            Ok(result) => result.map(|_| ()).map_err(CacheError::from),
            Err(_) => Err(CacheError::Timeout),
        }
    }
}
