//! Root query fields. Each resolves through the request's loaders, never SQL or Redis.
use async_graphql::{Context, ID, Object};

use super::{
    cost::{list_cost, page_cost},
    performance::{PerformanceReport, PerformanceScenario},
    stats::CacheStatsView,
    types::{
        Category, MAX_FIRST, Product, ProductConnection, ProductFilter, ProductOrder, parse_id,
        request,
    },
};
use crate::error::AppError;

pub struct Query;

#[Object]
impl Query {
    /// One product, or null when the id does not exist.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = parse_id("id", &id)?;
        Ok(request(ctx)?.products.load_one(id).await?.map(Product))
    }

    /// Products in the order of `ids`, null for each id that does not exist (at most 100 ids).
    #[graphql(complexity = "list_cost(ids.len(), child_complexity, 1)")]
    async fn products_by_ids(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Product>>> {
        if ids.len() > MAX_FIRST as usize {
            return Err(AppError::bad_input("ids", format!("at most {MAX_FIRST} ids")).into());
        }
        let ids = ids
            .iter()
            .map(|id| parse_id("ids", id))
            .collect::<Result<Vec<_>, _>>()?;
        let req = request(ctx)?;
        let found = req.products.load_many(ids.iter().copied()).await?;
        super::types::prefetch_categories(ctx, req, found.values(), &["category"]).await?;
        Ok(ids
            .iter()
            .map(|id| found.get(id).cloned().map(Product))
            .collect())
    }

    /// A page of products: filtered, ordered, cursor-paginated (`first` at most 100).
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        filter: Option<ProductFilter>,
        order_by: Option<ProductOrder>,
        #[graphql(default = 20)] first: i32,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let filter = filter.unwrap_or_default().validate()?;
        ProductConnection::load(ctx, filter, order_by, first, after, true).await
    }

    /// Every category, by name. (Counted as 20 categories in a query's complexity.)
    #[graphql(complexity = "list_cost(20, child_complexity, 1)")]
    async fn categories(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        let req = request(ctx)?;
        let counts = req.category_counts().await?;
        let found = req
            .categories
            .load_many(counts.entries.iter().map(|(id, _)| *id))
            .await?;
        Ok(counts
            .entries
            .iter()
            .filter_map(|(id, _)| found.get(id).cloned().map(Category))
            .collect())
    }

    /// One category, or null when the id does not exist.
    async fn category(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Category>> {
        let id = parse_id("id", &id)?;
        Ok(request(ctx)?.categories.load_one(id).await?.map(Category))
    }

    /// Runs a read scenario `iterations` times through the cache (warm) and with the
    /// cache bypassed, and compares latency (milliseconds) and work per run. Needs the
    /// admin token: each run puts up to 400 reads on the database.
    #[graphql(cache_control(no_cache))]
    async fn cache_performance(
        &self,
        ctx: &Context<'_>,
        scenario: PerformanceScenario,
        #[graphql(default = 50)] iterations: i32,
    ) -> async_graphql::Result<PerformanceReport> {
        if !request(ctx)?.is_admin {
            return Err(AppError::Unauthenticated.into());
        }
        super::performance::run(ctx, scenario, iterations).await
    }

    /// Cache counters since start (or the last reset) and the backend's state.
    #[graphql(cache_control(no_cache))]
    async fn cache_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CacheStatsView> {
        Ok(CacheStatsView::read(&request(ctx)?.catalog).await)
    }
}
