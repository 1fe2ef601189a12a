//! Per-request DataLoaders. Each request gets fresh ones (so nothing is shared between
//! requests except through the cache), carrying the request's tally. Items loaded once
//! in a request are kept for the rest of it, which lets list resolvers prefetch the
//! categories of a whole page in one batch however the resolvers are scheduled. Every batch is one
//! call into the catalog: one cache round trip, then at most one SQL statement per kind.
use std::{collections::HashMap, sync::Arc};

use async_graphql::{
    ErrorExtensions,
    dataloader::{DataLoader, HashMapCache, Loader},
};
use tokio::sync::OnceCell;

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
        Self {
            products: DataLoader::with_cache(
                ProductLoader {
                    catalog: catalog.clone(),
                    tally: tally.clone(),
                },
                tokio::spawn,
                HashMapCache::default(),
            ),
            categories: DataLoader::with_cache(
                CategoryLoader {
                    catalog: catalog.clone(),
                    tally: tally.clone(),
                },
                tokio::spawn,
                HashMapCache::default(),
            ),
            pages: DataLoader::new(
                PageLoader {
                    catalog: catalog.clone(),
                    tally: tally.clone(),
                },
                tokio::spawn,
            ),
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
