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
use std::{collections::HashMap, sync::Arc, time::Duration};

use async_graphql::{
    ErrorExtensions,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::{
    cache::RequestTally,
    catalog::{
        Catalog,
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

pub struct ProductLoader {
    catalog: Catalog,
    tally: Arc<RequestTally>,
}

impl Loader<i32> for ProductLoader {
    type Value = Product;
    type Error = LoadError;

    async fn load(&self, keys: &[i32]) -> Result<HashMap<i32, Product>, LoadError> {
        self.catalog
            .products(keys, &self.tally)
            .await
            .map_err(|e| LoadError(Arc::new(e)))
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
        self.catalog
            .categories(keys, &self.tally)
            .await
            .map_err(|e| LoadError(Arc::new(e)))
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
        self.catalog
            .product_pages(keys, &self.tally)
            .await
            .map_err(|e| LoadError(Arc::new(e)))
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
}

impl RequestContext {
    pub fn new(catalog: &Catalog, is_admin: bool) -> Self {
        let tally = Arc::new(RequestTally::default());
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
        Self {
            products: DataLoader::with_cache(products, spawn_in_span, HashMapCache::default())
                .delay(Duration::ZERO),
            categories: DataLoader::with_cache(categories, spawn_in_span, HashMapCache::default())
                .delay(Duration::ZERO),
            pages: DataLoader::new(pages, spawn_in_span).delay(Duration::ZERO),
            counts: OnceCell::new(),
            tally,
            is_admin,
            catalog: catalog.clone(),
        }
    }

    pub async fn category_counts(&self) -> Result<&CategoryCounts, AppError> {
        self.counts
            .get_or_try_init(|| self.catalog.category_counts(&self.tally))
            .await
    }
}

/// A batch runs in the request's span, so what it logs carries the request id.
fn spawn_in_span(batch: BoxFuture<'static, ()>) {
    tokio::spawn(batch.in_current_span());
}
