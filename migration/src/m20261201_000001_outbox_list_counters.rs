//! The list counters an outbox row must bump when it is replayed (space-separated names
//! such as `c3:members all:members categories`). Rows written before this column existed
//! hold NULL; a replay of such a row cannot know which lists it changed and clears the
//! whole cache (an epoch bump) instead.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    ListCounters,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .add_column(text_null(CacheOutbox::ListCounters))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .drop_column(CacheOutbox::ListCounters)
                    .to_owned(),
            )
            .await
    }
}
