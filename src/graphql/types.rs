//! The GraphQL object and input types. They wrap the catalog's model types; database
//! entities never appear here. Nested fields resolve through the request's loaders.
use async_graphql::{Context, Enum, ID, InputObject, Object};

pub use super::connection::{ProductConnection, prefetch_categories};
use super::{
    cost::page_cost,
    loaders::RequestContext,
    scalars::{DateTime, Decimal},
};
use crate::{
    catalog::{
        model::{self, ProductFilter as Filter},
        validate,
    },
    error::AppError,
};

/// Largest page `first` may ask for.
pub const MAX_FIRST: i32 = 100;

pub fn request<'a>(ctx: &'a Context<'_>) -> Result<&'a RequestContext, async_graphql::Error> {
    ctx.data::<RequestContext>()
}

/// Parses an `ID` argument into a database id; anything but a positive integer is bad input.
pub fn parse_id(field: &'static str, id: &ID) -> Result<i32, AppError> {
    id.parse::<i32>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::bad_input(field, format!("{field} must be a positive integer id")))
}

pub struct Product(pub model::Product);

// The max-age hints become `Cache-Control` on GET query responses (`transport::respond`).
/// A product of the catalog.
#[Object(cache_control(max_age = 10))]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// Exact price, two decimals.
    async fn price(&self) -> Decimal {
        Decimal(validate::cents_to_decimal(self.0.price_cents))
    }
    async fn stock_quantity(&self) -> i32 {
        self.0.stock_quantity
    }
    async fn in_stock(&self) -> bool {
        self.0.stock_quantity > 0
    }
    /// Starts at 1 and grows by 1 with every update.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
    /// Resolved through the request's category loader: one batch for a whole page.
    async fn category(&self, ctx: &Context<'_>) -> async_graphql::Result<Category> {
        let req = request(ctx)?;
        let found = req.categories.load_one(self.0.category_id).await?;
        found.map(Category).ok_or_else(|| {
            AppError::Internal(format!(
                "category {} of product {} missing",
                self.0.category_id, self.0.id
            ))
            .into()
        })
    }
}

pub struct Category(pub model::Category);

/// A product category; created when a product first names it.
#[Object(cache_control(max_age = 30))]
impl Category {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn product_count(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        let counts = request(ctx)?.category_counts().await?;
        Ok(counts
            .entries
            .iter()
            .find(|(id, _)| *id == self.0.id)
            .map(|(_, n)| *n)
            .unwrap_or(0))
    }
    /// This category's products, as a connection.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
        after: Option<String>,
        order_by: Option<ProductOrder>,
    ) -> async_graphql::Result<ProductConnection> {
        let filter = Filter {
            category_id: Some(self.0.id),
            ..Default::default()
        };
        // This category exists: no need to ask again (see `ProductConnection::load`).
        ProductConnection::load(ctx, filter, order_by, first, after, false).await
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProductOrderField {
    #[default]
    Id,
    Name,
    Price,
    CreatedAt,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderDirection {
    #[default]
    Asc,
    Desc,
}

/// Sort order of a product list; ties are broken by id.
#[derive(InputObject, Clone, Copy, Default)]
pub struct ProductOrder {
    #[graphql(default)]
    pub field: ProductOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// Filters of a product list; all given filters must match.
#[derive(InputObject, Default)]
pub struct ProductFilter {
    pub category_id: Option<ID>,
    pub min_price: Option<Decimal>,
    pub max_price: Option<Decimal>,
    /// Case-insensitive substring of the name.
    pub search: Option<String>,
    pub in_stock: Option<bool>,
}

impl ProductFilter {
    pub fn validate(self) -> Result<Filter, AppError> {
        let search = self
            .search
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty());
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > validate::NAME_MAX)
        {
            return Err(AppError::bad_input(
                "search",
                "search must be at most 200 characters",
            ));
        }
        let f = Filter {
            category_id: self
                .category_id
                .as_ref()
                .map(|id| parse_id("categoryId", id))
                .transpose()?,
            min_price_cents: self
                .min_price
                .map(|d| validate::price_cents("minPrice", d.0))
                .transpose()?,
            max_price_cents: self
                .max_price
                .map(|d| validate::price_cents("maxPrice", d.0))
                .transpose()?,
            search,
            in_stock: self.in_stock,
        };
        if let (Some(min), Some(max)) = (f.min_price_cents, f.max_price_cents)
            && min > max
        {
            return Err(AppError::bad_input(
                "minPrice",
                "minPrice must not exceed maxPrice",
            ));
        }
        Ok(f)
    }
}

/// Fields of a new product.
#[derive(InputObject)]
pub struct CreateProductInput {
    /// 1 to 200 characters after trimming.
    pub name: String,
    /// Up to 2,000 characters.
    pub description: Option<String>,
    /// >= 0, at most two decimals.
    pub price: Decimal,
    /// Category name; created when new (matched by its slug).
    pub category: String,
    #[graphql(default)]
    pub stock_quantity: i32,
}

/// Fields to change; omitted fields keep their value.
#[derive(InputObject, Default)]
pub struct UpdateProductInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Decimal>,
    pub category: Option<String>,
    pub stock_quantity: Option<i32>,
}
