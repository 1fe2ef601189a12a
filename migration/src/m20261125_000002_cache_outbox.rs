//! The cache outbox: every write that must invalidate a shared cache records the
//! invalidation here, in the write's own transaction. It is deleted once Redis has
//! acknowledged it; until then every instance replays it, so a write is never left
//! cached stale because Redis was unreachable when it committed.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    Id,
    /// The product written.
    ProductId,
    /// Its version after the write (the deletion's version for a delete).
    Version,
    /// True for a deletion.
    Gone,
    /// A category the write created, whose "absent" marker must go too.
    NewCategoryId,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CacheOutbox::Table)
                    .if_not_exists()
                    .col(big_pk_auto(CacheOutbox::Id))
                    .col(integer(CacheOutbox::ProductId))
                    .col(big_integer(CacheOutbox::Version))
                    .col(boolean(CacheOutbox::Gone))
                    .col(integer_null(CacheOutbox::NewCategoryId))
                    .col(timestamp_with_time_zone(CacheOutbox::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CacheOutbox::Table).to_owned())
            .await
    }
}
