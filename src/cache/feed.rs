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
const BACKLOG: usize = 1024;

/// Subscribes `sub` to `channel` (retrying a while), then marks the feed up.
async fn subscribe(sub: SubscriberClient, channel: String, up: Arc<AtomicBool>) {
    for _ in 0..50 {
        match sub.subscribe(channel.as_str()).await {
            Ok(()) => {
                up.store(true, SeqCst);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "change feed: subscribe failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
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
            .build_subscriber_client()?;
        let (tx, _) = broadcast::channel(BACKLOG);
        let up = Arc::new(AtomicBool::new(false));
        let channel_name = channel.clone();
        {
            let tx = tx.clone();
            let _messages = subscriber.on_message(move |m: fred::types::Message| {
                if let Some(text) = m.value.as_str() {
                    let _ = tx.send(Heard::Message(text.as_ref().into()));
                }
                async { Ok(()) }
            });
        }
        {
            let (tx, up) = (tx.clone(), up.clone());
            let _errors = subscriber.on_error(move |_| {
                // Only a feed that was up can have lost messages since.
                if up.swap(false, SeqCst) {
                    let _ = tx.send(Heard::Lost);
                    tracing::warn!(
                        "the change feed lost its Redis connection: live subscriptions end"
                    );
                }
                async { Ok(()) }
            });
        }
        {
            let (sub, up, tx) = (subscriber.clone(), up.clone(), tx.clone());
            let _reconnects = subscriber.on_reconnect(move |_| {
                let (sub, up, tx, channel) = (sub.clone(), up.clone(), tx.clone(), channel.clone());
                // A reconnect means a gap, even if no error was seen: tell listeners.
                if up.swap(false, SeqCst) {
                    let _ = tx.send(Heard::Lost);
                }
                tokio::spawn(subscribe(sub, channel, up));
                async { Ok(()) }
            });
        }
        let _connection = publisher.connect();
        let _subscription = subscriber.connect();
        {
            let (sub, channel, up) = (subscriber.clone(), channel_name.clone(), up.clone());
            tokio::spawn(async move {
                if sub.wait_for_connect().await.is_ok() {
                    subscribe(sub, channel, up).await;
                }
            });
        }
        Ok(Self {
            tx,
            redis: Some(RedisFeed {
                publisher,
                _subscriber: subscriber,
                channel: channel_name,
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
