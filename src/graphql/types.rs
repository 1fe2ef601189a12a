//! The GraphQL object and input types. They wrap the catalog's model types; database
//! entities never appear here. Nested fields resolve through the request's loaders.
use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

use super::{loaders::RequestContext, scalars::Decimal};
use crate::{
    catalog::{
        model::{
            self, Cursor, OrderField, ProductFilter as Filter, ProductOrder as Order, ProductQuery,
        },
        validate,
    },
    error::AppError,
};

/// Largest page `first` may ask for.
pub const MAX_FIRST: i32 = 100;

/// The complexity one SQL statement a field can cause weighs: a list field that misses
/// the cache runs two (the page's ids, the count), so its cost is not that of one field
/// (`QUERY_MAX_SQL_STATEMENTS` bounds what actually runs; this refuses before running).
pub const SQL_WEIGHT: usize = 50;

/// Highest cost any one field is given: sums of many such fields stay far from
/// `usize::MAX` (async-graphql adds them without saturating), however deep lists nest.
const COST_CAP: usize = 1 << 40;

/// The complexity of a list of `n` items of `child` each that may cost `statements` SQL
/// statements: saturating, and capped.
pub fn list_cost(n: usize, child: usize, statements: usize) -> usize {
    n.max(1)
        .saturating_mul(child)
        .saturating_add(1)
        .saturating_add(statements * SQL_WEIGHT)
        .min(COST_CAP)
}

/// `products(first:)` and `Category.products(first:)`: a page of `first` and its count.
pub fn page_cost(first: i32, child: usize) -> usize {
    list_cost(first.clamp(1, MAX_FIRST) as usize, child, 2)
}

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
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
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

fn to_order(o: Option<ProductOrder>) -> Order {
    let o = o.unwrap_or_default();
    Order {
        field: match o.field {
            ProductOrderField::Id => OrderField::Id,
            ProductOrderField::Name => OrderField::Name,
            ProductOrderField::Price => OrderField::Price,
            ProductOrderField::CreatedAt => OrderField::CreatedAt,
        },
        descending: o.direction == OrderDirection::Desc,
    }
}

pub fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(raw: &str, order: Order) -> Result<Cursor, AppError> {
    let bad = || AppError::bad_input("after", "after is not a cursor of this list and order");
    let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| bad())?;
    let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.field != order.field {
        return Err(bad());
    }
    Ok(c)
}

/// Relay page information.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

/// One product of a page, with the cursor to resume after it.
#[derive(SimpleObject)]
pub struct ProductEdge {
    pub cursor: String,
    pub node: Product,
}

/// A page of products (Relay connection). The page's ids come from the list cache, the
/// products themselves from the item cache, so a page never shows a stale product.
#[derive(SimpleObject)]
#[graphql(complex, cache_control(max_age = 10))]
pub struct ProductConnection {
    pub edges: Vec<ProductEdge>,
    pub page_info: PageInfo,
    /// All products matching the filter, on every page.
    pub total_count: u64,
}

#[ComplexObject]
impl ProductConnection {
    /// The products of this page, without cursors.
    async fn nodes(&self) -> Vec<Product> {
        self.edges
            .iter()
            .map(|e| Product(e.node.0.clone()))
            .collect()
    }
}

impl ProductConnection {
    /// A page of `filter`. With `check_category`, a filter on a category that does not
    /// exist answers an empty page at once: no list page, no list counter and no SQL
    /// for ids a stranger made up (the category's "absent" entry is read through the
    /// cache and stamped, and a creation replaces it before its mutation returns).
    pub async fn load(
        ctx: &Context<'_>,
        filter: Filter,
        order_by: Option<ProductOrder>,
        first: i32,
        after: Option<String>,
        check_category: bool,
    ) -> async_graphql::Result<Self> {
        if !(0..=MAX_FIRST).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 0 and {MAX_FIRST}"),
            )
            .into());
        }
        let order = to_order(order_by);
        let after = after
            .as_deref()
            .map(|a| decode_cursor(a, order))
            .transpose()?;
        let has_previous_page = after.is_some();
        let req = request(ctx)?;
        if check_category
            && let Some(id) = filter.category_id
            && !req.catalog.category_known(id)
            && req.categories.load_one(id).await?.is_none()
        {
            return Ok(Self {
                edges: Vec::new(),
                page_info: PageInfo {
                    has_next_page: false,
                    has_previous_page,
                    start_cursor: None,
                    end_cursor: None,
                },
                total_count: 0,
            });
        }
        let query = ProductQuery {
            filter,
            order,
            first: first as u64,
            after,
        };
        let page = req
            .pages
            .load_one(query)
            .await?
            .ok_or_else(|| AppError::Internal("list page missing".into()))?;
        let products = req.products.load_many(page.ids.iter().copied()).await?;
        prefetch_categories(ctx, req, products.values(), &["nodes", "category"]).await?;
        prefetch_categories(ctx, req, products.values(), &["edges", "node", "category"]).await?;
        let edges: Vec<ProductEdge> = page
            .ids
            .iter()
            .filter_map(|id| products.get(id))
            .map(|p| ProductEdge {
                cursor: encode_cursor(&Cursor::of(p, order.field)),
                node: Product(p.clone()),
            })
            .collect();
        Ok(Self {
            page_info: PageInfo {
                has_next_page: page.has_next,
                has_previous_page,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
            total_count: page.total,
        })
    }
}

/// When the selection reaches `path` (e.g. `nodes { category }`), loads the categories
/// of all `products` in one batch now, so each `Product.category` resolver finds its
/// category in the request's loader instead of depending on batch timing.
pub async fn prefetch_categories<'a>(
    ctx: &Context<'_>,
    req: &RequestContext,
    products: impl Iterator<Item = &'a model::Product>,
    path: &[&str],
) -> async_graphql::Result<()> {
    let wanted = path
        .iter()
        .fold(ctx.look_ahead(), |look, field| look.field(field))
        .exists();
    if wanted {
        let ids: std::collections::BTreeSet<i32> = products.map(|p| p.category_id).collect();
        req.categories.load_many(ids).await?;
    }
    Ok(())
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
