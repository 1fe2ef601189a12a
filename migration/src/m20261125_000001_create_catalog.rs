//! The catalog: categories, and products with the `version` the cache protocol relies on.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Categories {
    Table,
    Id,
    Name,
    Slug,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Products {
    Table,
    Id,
    Name,
    Description,
    /// Money as integer cents: exact, and identical on Postgres and SQLite.
    PriceCents,
    CategoryId,
    StockQuantity,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Categories::Table)
                    .if_not_exists()
                    .col(pk_auto(Categories::Id))
                    .col(string_len_uniq(Categories::Name, 100))
                    .col(string_len_uniq(Categories::Slug, 120))
                    .col(timestamp_with_time_zone(Categories::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Products::Table)
                    .if_not_exists()
                    .col(pk_auto(Products::Id))
                    .col(string_len(Products::Name, 200))
                    .col(text(Products::Description).default(""))
                    .col(big_integer(Products::PriceCents))
                    .col(integer(Products::CategoryId))
                    .col(integer(Products::StockQuantity))
                    .col(integer(Products::Version).default(1))
                    .col(timestamp_with_time_zone(Products::CreatedAt))
                    .col(timestamp_with_time_zone(Products::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_products_category")
                            .from(Products::Table, Products::CategoryId)
                            .to(Categories::Table, Categories::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .check(Expr::col(Products::PriceCents).gte(0))
                    .check(Expr::col(Products::StockQuantity).gte(0))
                    .to_owned(),
            )
            .await?;
        // Every list order is keyset-paginated on (column, id); these back the filters
        // and orders of `products(...)` and the per-category lists.
        for (name, col) in [
            ("idx_products_category_id", Products::CategoryId),
            ("idx_products_price_id", Products::PriceCents),
            ("idx_products_name_id", Products::Name),
            ("idx_products_created_id", Products::CreatedAt),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Products::Table)
                        .col(col)
                        .col(Products::Id)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Products::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Categories::Table).to_owned())
            .await
    }
}
