//! Delivered outbox rows are kept (the newest ones) with the value of Redis's history
//! counter their delivery reached: the anchor of the history check, which detects a
//! Redis that came back with older data. `NULL` means not delivered yet.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    DeliveredSeq,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .add_column(big_integer_null(CacheOutbox::DeliveredSeq))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("cache_outbox_delivered_seq")
                    .table(CacheOutbox::Table)
                    .col(CacheOutbox::DeliveredSeq)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("cache_outbox_delivered_seq")
                    .table(CacheOutbox::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .drop_column(CacheOutbox::DeliveredSeq)
                    .to_owned(),
            )
            .await
    }
}
