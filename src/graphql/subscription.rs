//! `Subscription.productChanged`: product changes, pushed over WebSocket
//! (`transport::ws`). A subscription listens to this instance's relay of the change
//! feed (`catalog::events`), keeps the changes of its product (or all), drops versions
//! it has passed, and ends with an error when the feed was lost (changes may have been
//! missed: never silence). Each change is resolved with fresh loaders (`FreshLoaders`):
//! a connection-long request context would answer a second change from the first one's
//! loader cache.
use std::sync::Arc;

use async_graphql::{
    Context, Data, Enum, ErrorExtensions, ID, Object, Response, Subscription,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute},
};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{
    loaders::RequestContext,
    types::{Product, parse_id, request},
};
use crate::{
    catalog::{
        Catalog,
        events::{Change, ChangeKind, Live},
    },
    error::{ErrorCode, coded},
};

/// What one WebSocket connection's operations share (its session data).
pub struct Connection {
    pub catalog: Catalog,
    /// Subscriptions without an id on this instance, and how many may be.
    pub unfiltered: Arc<tokio::sync::Semaphore>,
    /// Of those, this connection's (`SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION`): a few
    /// sockets must not take the whole instance's share.
    pub unfiltered_here: Arc<tokio::sync::Semaphore>,
    /// Ends the connection (a consumer too slow for its changes).
    pub control: Arc<Control>,
}

/// Asks the connection's loop to close the socket with a code and a reason (the first
/// asked wins); every waiter sees it (a `watch`, not a `Notify` that wakes one).
pub struct Control {
    reason: tokio::sync::watch::Sender<Option<(u16, String)>>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            reason: tokio::sync::watch::Sender::new(None),
        }
    }
}

impl Control {
    pub fn close(&self, code: u16, reason: String) {
        self.reason.send_if_modified(|r| {
            let first = r.is_none();
            r.get_or_insert((code, reason));
            first
        });
    }

    /// Resolves once `close` was called, with its code and reason.
    pub async fn closed(&self) -> (u16, String) {
        let mut rx = self.reason.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            // The sender lives in `self`: not reached while `self` is borrowed.
            Err(_) => (1011, String::new()),
        }
    }
}

/// The close code for a consumer that fell behind (1013: try again later; clients
/// reconnect and subscribe again).
pub const SLOW_CONSUMER: u16 = 1013;

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ProductChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One change of one product.
pub struct ProductChange(Arc<Change>);

#[Object]
impl ProductChange {
    async fn kind(&self) -> ProductChangeKind {
        match self.0.event.kind {
            ChangeKind::Created => ProductChangeKind::Created,
            ChangeKind::Updated => ProductChangeKind::Updated,
            ChangeKind::Deleted => ProductChangeKind::Deleted,
        }
    }
    async fn id(&self) -> ID {
        ID(self.0.event.id.to_string())
    }
    /// The product's version after the change (for DELETED, its last version + 1):
    /// changes of one product arrive in this order, each once.
    async fn version(&self) -> i32 {
        i32::try_from(self.0.event.version).unwrap_or(i32::MAX)
    }
    /// The product as it is now, never older than `version`; null for DELETED (or a
    /// product deleted since).
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let catalog = &request(ctx)?.catalog;
        Ok(self
            .0
            .product(catalog)
            .await
            .map_err(|e| e.extend())?
            .map(Product))
    }
}

pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Every change of product `id`, or of every product when `id` is omitted.
    async fn product_changed(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ProductChange>> + use<>>
    {
        let conn = ctx.data::<Connection>().map_err(|_| {
            coded(
                ErrorCode::BadRequest,
                "subscriptions are served over WebSocket on /graphql",
            )
        })?;
        let only = id
            .map(|id| parse_id("id", &id))
            .transpose()
            .map_err(|e| e.extend())?;
        let permit = match only {
            Some(_) => None,
            None => {
                let here = conn.unfiltered_here.clone().try_acquire_owned().map_err(|_| {
                    coded(
                        ErrorCode::BadRequest,
                        "this connection holds as many productChanged subscriptions without an id as one connection may (SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION); pass an id",
                    )
                })?;
                let instance = conn.unfiltered.clone().try_acquire_owned().map_err(|_| {
                    coded(
                        ErrorCode::Overloaded,
                        "this server already serves as many productChanged subscriptions without an id as it allows (SUBSCRIPTION_MAX_UNFILTERED); pass an id",
                    )
                })?;
                Some((here, instance))
            }
        };
        let Some(rx) = conn.catalog.changes() else {
            return Err(coded(
                ErrorCode::LiveUpdatesUnavailable,
                "live updates are unavailable now: the change feed is not connected",
            ));
        };
        let state = Listening {
            rx,
            only,
            control: conn.control.clone(),
            _permit: permit,
            ended: false,
        };
        Ok(futures::stream::unfold(state, next_change))
    }
}

struct Listening {
    rx: tokio::sync::broadcast::Receiver<Live>,
    only: Option<i32>,
    control: Arc<Control>,
    /// Held while the subscription lives (unfiltered ones only): the connection's place
    /// and the instance's.
    _permit: Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )>,
    ended: bool,
}

async fn next_change(
    mut s: Listening,
) -> Option<(async_graphql::Result<ProductChange>, Listening)> {
    if s.ended {
        return None;
    }
    loop {
        match s.rx.recv().await {
            Ok(Live::Change(change)) => {
                if s.only.is_some_and(|id| id != change.event.id) {
                    continue;
                }
                return Some((Ok(ProductChange(change)), s));
            }
            Ok(Live::Lost) => {
                s.ended = true;
                let e = coded(
                    ErrorCode::LiveUpdatesUnavailable,
                    "live updates were interrupted (the change feed lost its connection) and changes may have been missed: read again and subscribe again",
                );
                return Some((Err(e), s));
            }
            Err(RecvError::Lagged(missed)) => {
                crate::metrics::subscription_dropped_slow();
                s.control.close(
                    SLOW_CONSUMER,
                    format!("too slow: {missed} changes were not read in time; reconnect"),
                );
                // Not ended: a `complete` would tell the client the subscription is over,
                // and it would not subscribe again after reconnecting. The close ends it.
                std::future::pending::<()>().await;
                return None;
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

/// Gives every execution on a WebSocket connection (each change a subscription sends)
/// a request context of its own; HTTP requests bring theirs.
pub struct FreshLoaders;

impl ExtensionFactory for FreshLoaders {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FreshLoaders)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for FreshLoaders {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        match ctx.data_opt::<Connection>() {
            Some(conn) => {
                let mut data = Data::default();
                data.insert(RequestContext::new(&conn.catalog, false));
                next.run_with_data(ctx, operation_name, data).await
            }
            None => next.run(ctx, operation_name).await,
        }
    }
}
