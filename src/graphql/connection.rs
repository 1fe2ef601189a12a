//! `products(...)` as a Relay connection: the page's ids from the list cache, the
//! products from the item cache (so a page never shows a stale product), cursors, and
//! the category prefetch that loads a whole page's categories in one batch.
use async_graphql::{ComplexObject, Context, SimpleObject};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{
    loaders::RequestContext,
    types::{MAX_FIRST, OrderDirection, Product, ProductOrder, ProductOrderField, request},
};
use crate::{
    catalog::model::{
        self, Cursor, OrderField, ProductFilter as Filter, ProductOrder as Order, ProductQuery,
    },
    error::AppError,
};

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
