//! A delivered outbox row records the history counter of each key group its delivery
//! touched (`group:value ...`): on a Redis Cluster the keys spread over hash-tag groups
//! that can each lose data on their own (a master failover), and the history check
//! compares every group. `NULL` in rows delivered before (one group: `delivered_seq`).
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    DeliveredHist,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .add_column(text_null(CacheOutbox::DeliveredHist))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .drop_column(CacheOutbox::DeliveredHist)
                    .to_owned(),
            )
            .await
    }
}
