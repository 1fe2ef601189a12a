//! Per-request DataLoaders. Each request gets fresh ones (so nothing is shared between
//! requests except through the cache), carrying the request's tally. Items loaded once
//! in a request are kept for the rest of it, which lets list resolvers prefetch the
//! categories of a whole page in one batch however the resolvers are scheduled. Every batch is one
//! call into the catalog: one cache round trip, then at most one SQL statement per kind.
//!
//! No batch waits for a timer (async-graphql's default is 1 ms, which a cached page paid
//! three times in a row): a batch starts in a task of its own, and that task first runs
//! when the request's task yields, which is after every sibling field of the same level
//! has been polled and has added its keys. The list resolvers load a whole level's keys
//! in one call anyway (`load_many`, the category prefetch), so nothing relies on timing.
//!
//! Those tasks end with the request: dropping a `RequestContext` (a finished request, a
//! timeout, a client that went away) aborts its batches, so no read work goes on for a
//! request nobody waits for (a single-flight read other requests joined goes on, polled
//! by them). A panic inside a batch becomes an internal error of that load, logged with
//! the request's id, instead of a lost task.
use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{
    ErrorExtensions,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use futures::{FutureExt, future::BoxFuture};
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::{
    catalog::{
        Catalog, RequestTally,
        model::{Category, CategoryCounts, ListPage, Product, ProductQuery},
    },
    error::AppError,
};

/// A loader error, cloneable as DataLoader requires; the catalog already logged it.
#[derive(Clone)]
pub struct LoadError(pub Arc<AppError>);

impl From<LoadError> for async_graphql::Error {
    fn from(e: LoadError) -> Self {
        e.0.extend()
    }
}

/// Runs one batch's catalog call, turning a panic inside it into an internal error
/// (logged here, inside the request's span, so with its id).
async fn guarded<T>(
    what: &'static str,
    load: impl Future<Output = Result<T, AppError>>,
) -> Result<T, LoadError> {
    match AssertUnwindSafe(load).catch_unwind().await {
        Ok(result) => result.map_err(|e| LoadError(Arc::new(e))),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %message, load = what, "a loader panicked");
            Err(LoadError(Arc::new(AppError::Internal(format!(
                "loading {what} panicked"
            )))))
        }
    }
}

pub struct ProductLoader {
    catalog: Catalog,
    tally: Arc<RequestTally>,
}

impl Loader<i32> for ProductLoader {
    type Value = Product;
    type Error = LoadError;

    async fn load(&self, keys: &[i32]) -> Result<HashMap<i32, Product>, LoadError> {
        guarded("products", self.catalog.products(keys, &self.tally)).await
    }
}

pub struct CategoryLoader {
    catalog: Catalog,
    tally: Arc<RequestTally>,
}

impl Loader<i32> for CategoryLoader {
    type Value = Category;
    type Error = LoadError;

    async fn load(&self, keys: &[i32]) -> Result<HashMap<i32, Category>, LoadError> {
        guarded("categories", self.catalog.categories(keys, &self.tally)).await
    }
}

/// List pages: the nested `products` of ten categories read their pages in one round trip.
pub struct PageLoader {
    catalog: Catalog,
    tally: Arc<RequestTally>,
}

impl Loader<ProductQuery> for PageLoader {
    type Value = ListPage;
    type Error = LoadError;

    async fn load(
        &self,
        keys: &[ProductQuery],
    ) -> Result<HashMap<ProductQuery, ListPage>, LoadError> {
        guarded("lists", self.catalog.product_pages(keys, &self.tally)).await
    }
}

/// Everything one GraphQL request carries: its loaders, its tally, whether it is admin.
pub struct RequestContext {
    pub tally: Arc<RequestTally>,
    pub products: DataLoader<ProductLoader, HashMapCache>,
    pub categories: DataLoader<CategoryLoader, HashMapCache>,
    pub pages: DataLoader<PageLoader>,
    /// Category product counts, read at most once per request.
    pub counts: OnceCell<CategoryCounts>,
    pub is_admin: bool,
    pub catalog: Catalog,
    /// The batch tasks this request spawned, aborted when it ends.
    tasks: Arc<Tasks>,
}

/// Abort handles of a request's batch tasks. A std Mutex: held for a push, never across
/// an await.
#[derive(Default)]
struct Tasks(Mutex<Vec<tokio::task::AbortHandle>>);

impl Tasks {
    /// Spawns a batch in the request's span (so what it logs carries the request id).
    fn spawn(&self, batch: BoxFuture<'static, ()>) {
        let handle = tokio::spawn(batch.in_current_span()).abort_handle();
        let mut tasks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tasks.len() >= 64 {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(handle);
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        for task in self
            .tasks
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

impl RequestContext {
    pub fn new(catalog: &Catalog, is_admin: bool) -> Self {
        let tally = Arc::new(catalog.request_tally());
        let products = ProductLoader {
            catalog: catalog.clone(),
            tally: tally.clone(),
        };
        let categories = CategoryLoader {
            catalog: catalog.clone(),
            tally: tally.clone(),
        };
        let pages = PageLoader {
            catalog: catalog.clone(),
            tally: tally.clone(),
        };
        let tasks = Arc::new(Tasks::default());
        let spawner = |tasks: &Arc<Tasks>| {
            let tasks = tasks.clone();
            move |batch| tasks.spawn(batch)
        };
        Self {
            products: DataLoader::with_cache(products, spawner(&tasks), HashMapCache::default())
                .delay(Duration::ZERO),
            categories: DataLoader::with_cache(
                categories,
                spawner(&tasks),
                HashMapCache::default(),
            )
            .delay(Duration::ZERO),
            pages: DataLoader::new(pages, spawner(&tasks)).delay(Duration::ZERO),
            counts: OnceCell::new(),
            tally,
            is_admin,
            catalog: catalog.clone(),
            tasks,
        }
    }

    pub async fn category_counts(&self) -> Result<&CategoryCounts, AppError> {
        self.counts
            .get_or_try_init(|| self.catalog.category_counts(&self.tally))
            .await
    }
}
