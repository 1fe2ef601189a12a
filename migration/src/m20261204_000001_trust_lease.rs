//! The trust lease (`catalog::lease`). `cache_outbox.gave_up`: the row's writer stopped
//! waiting for Redis to take it and answered; every instance's lease renewal lists such
//! rows until they are delivered. `cache_layout`: the one cache layout (key names, entry
//! formats, invalidation rules) whose instances may use the shared cache; `NULL` until
//! the first instance that records layouts starts, and `changed_at` when an instance
//! of a newer layout took it over (instances of the new layout trust the cache only
//! once every lease of the old one has expired).
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    GaveUp,
}

#[derive(DeriveIden)]
enum CacheLayout {
    Table,
    Id,
    Layout,
    ChangedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .add_column(boolean(CacheOutbox::GaveUp).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CacheLayout::Table)
                    .if_not_exists()
                    .col(integer(CacheLayout::Id).primary_key())
                    .col(integer_null(CacheLayout::Layout))
                    .col(timestamp_with_time_zone(CacheLayout::ChangedAt))
                    .to_owned(),
            )
            .await?;
        let epoch = match manager.get_database_backend() {
            DbBackend::Postgres => "'1970-01-01T00:00:00Z'::timestamptz",
            _ => "'1970-01-01T00:00:00+00:00'",
        };
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO cache_layout (id, layout, changed_at) VALUES (1, NULL, {epoch})"
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CacheLayout::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .drop_column(CacheOutbox::GaveUp)
                    .to_owned(),
            )
            .await
    }
}
