//! The read statements of the catalog (and the category lookup writes use), each a
//! function taking `&impl ConnectionTrait` so it runs on the pool or inside a write
//! transaction alike. Callers count statements. The writes' own statements live in
//! `catalog::write`.
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, JoinType, Order, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, RelationDef,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};

use super::entities::{category, product};
use super::lists::{OrderField, ProductFilter, ProductQuery, SortValue};

pub async fn products_by_ids(
    db: &impl ConnectionTrait,
    ids: &[i32],
) -> Result<Vec<product::Model>, DbErr> {
    product::Entity::find()
        .filter(product::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

pub async fn categories_by_ids(
    db: &impl ConnectionTrait,
    ids: &[i32],
) -> Result<Vec<category::Model>, DbErr> {
    category::Entity::find()
        .filter(category::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await
}

fn filter_condition(f: &ProductFilter) -> Condition {
    let mut c = Condition::all();
    if let Some(id) = f.category_id {
        c = c.add(product::Column::CategoryId.eq(id));
    }
    if let Some(min) = f.min_price_cents {
        c = c.add(product::Column::PriceCents.gte(min));
    }
    if let Some(max) = f.max_price_cents {
        c = c.add(product::Column::PriceCents.lte(max));
    }
    if let Some(s) = &f.search {
        let escaped = s
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        c = c.add(
            Expr::expr(Func::lower(Expr::col(product::Column::Name)))
                .like(LikeExpr::new(format!("%{escaped}%")).escape('\\')),
        );
    }
    match f.in_stock {
        Some(true) => c = c.add(product::Column::StockQuantity.gt(0)),
        Some(false) => c = c.add(product::Column::StockQuantity.eq(0)),
        None => {}
    }
    c
}

fn sort_column(field: OrderField) -> product::Column {
    match field {
        OrderField::Id => product::Column::Id,
        OrderField::Name => product::Column::Name,
        OrderField::Price => product::Column::PriceCents,
        OrderField::CreatedAt => product::Column::CreatedAt,
    }
}

/// Ids of one keyset page (`first` + 1 rows are read to learn whether more follow).
pub async fn product_page_ids(
    db: &impl ConnectionTrait,
    q: &ProductQuery,
) -> Result<(Vec<i32>, bool), DbErr> {
    let col = sort_column(q.order.field);
    let order = if q.order.descending {
        Order::Desc
    } else {
        Order::Asc
    };
    let mut cond = filter_condition(&q.filter);
    if let Some(after) = &q.after {
        let id = product::Column::Id;
        let beyond = |c: product::Column, v: sea_orm::Value| {
            if q.order.descending { c.lt(v) } else { c.gt(v) }
        };
        let value: sea_orm::Value = match &after.value {
            SortValue::Int(i) if q.order.field == OrderField::Id => (*i as i32).into(),
            SortValue::Int(i) => (*i).into(),
            SortValue::Text(s) => s.clone().into(),
            SortValue::Time(t) => (*t).into(),
        };
        cond = if q.order.field == OrderField::Id {
            cond.add(beyond(id, after.id.into()))
        } else {
            cond.add(
                Condition::any().add(beyond(col, value.clone())).add(
                    Condition::all()
                        .add(col.eq(value))
                        .add(beyond(id, after.id.into())),
                ),
            )
        };
    }
    let mut select = product::Entity::find()
        .select_only()
        .column(product::Column::Id)
        .filter(cond);
    if q.order.field != OrderField::Id {
        select = select.order_by(col, order.clone());
    }
    let mut ids: Vec<i32> = select
        .order_by(product::Column::Id, order)
        .limit(q.first + 1)
        .into_tuple()
        .all(db)
        .await?;
    let has_next = ids.len() as u64 > q.first;
    ids.truncate(q.first as usize);
    Ok((ids, has_next))
}

pub async fn product_count(db: &impl ConnectionTrait, f: &ProductFilter) -> Result<u64, DbErr> {
    product::Entity::find()
        .filter(filter_condition(f))
        .count(db)
        .await
}

fn products_of_category() -> RelationDef {
    category::Entity::belongs_to(product::Entity)
        .from(category::Column::Id)
        .to(product::Column::CategoryId)
        .into()
}

/// Every category id in name order, with its number of products.
pub async fn category_counts(db: &impl ConnectionTrait) -> Result<Vec<(i32, i64)>, DbErr> {
    category::Entity::find()
        .select_only()
        .column(category::Column::Id)
        .column_as(product::Column::Id.count(), "n")
        .join(JoinType::LeftJoin, products_of_category())
        .group_by(category::Column::Id)
        .group_by(category::Column::Name)
        .order_by_asc(category::Column::Name)
        .into_tuple()
        .all(db)
        .await
}

pub async fn category_by_slug(
    db: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<category::Model>, DbErr> {
    category::Entity::find()
        .filter(category::Column::Slug.eq(slug))
        .one(db)
        .await
}
