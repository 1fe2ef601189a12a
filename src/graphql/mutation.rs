//! Root mutation fields. Every one needs the admin token, and every write goes through
//! `Catalog` (transaction, commit, then invalidation).
use async_graphql::{Context, ID, Object, SimpleObject};

use super::{
    stats::CacheStatsView,
    types::{CreateProductInput, Product, UpdateProductInput, parse_id, request},
};
use crate::{
    catalog::write::{NewProduct, ProductPatch},
    error::AppError,
};

pub struct Mutation;

fn admin(ctx: &Context<'_>) -> async_graphql::Result<()> {
    if request(ctx)?.is_admin {
        Ok(())
    } else {
        Err(AppError::Unauthenticated.into())
    }
}

/// What `clearCache` did.
#[derive(SimpleObject)]
pub struct ClearCacheResult {
    /// `redis`, `memory` or `none`.
    pub backend: String,
    /// True when entries were made unreachable (false for the `none` backend).
    pub cleared: bool,
    /// The new cache epoch: entries written under older epochs now read as misses.
    pub epoch: Option<u64>,
}

#[Object]
impl Mutation {
    /// Creates a product; the category is created when new.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
    ) -> async_graphql::Result<Product> {
        admin(ctx)?;
        let catalog = &request(ctx)?.catalog;
        let product = catalog
            .create_product(NewProduct {
                name: input.name,
                description: input.description,
                price: input.price.0,
                category: input.category,
                stock_quantity: input.stock_quantity,
            })
            .await?;
        Ok(Product(product))
    }

    /// Changes the given fields of a product and bumps its version.
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
    ) -> async_graphql::Result<Product> {
        admin(ctx)?;
        let id = parse_id("id", &id)?;
        let catalog = &request(ctx)?.catalog;
        let product = catalog
            .update_product(
                id,
                ProductPatch {
                    name: input.name,
                    description: input.description,
                    price: input.price.map(|p| p.0),
                    category: input.category,
                    stock_quantity: input.stock_quantity,
                },
            )
            .await?;
        Ok(Product(product))
    }

    /// Deletes a product and returns it as it was.
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Product> {
        admin(ctx)?;
        let id = parse_id("id", &id)?;
        Ok(Product(request(ctx)?.catalog.delete_product(id).await?))
    }

    /// Makes every cache entry of this app unreachable at once (other apps sharing the
    /// Redis are untouched; no FLUSHDB, no SCAN).
    async fn clear_cache(&self, ctx: &Context<'_>) -> async_graphql::Result<ClearCacheResult> {
        admin(ctx)?;
        let catalog = &request(ctx)?.catalog;
        let epoch = catalog.clear_cache().await?;
        Ok(ClearCacheResult {
            backend: catalog.cache_status().backend.into(),
            cleared: epoch.is_some(),
            epoch,
        })
    }

    /// Sets every cache counter back to zero; returns the (reset) stats.
    async fn reset_cache_stats(&self, ctx: &Context<'_>) -> async_graphql::Result<CacheStatsView> {
        admin(ctx)?;
        let catalog = &request(ctx)?.catalog;
        catalog.reset_cache_stats();
        Ok(CacheStatsView::read(catalog).await)
    }
}
