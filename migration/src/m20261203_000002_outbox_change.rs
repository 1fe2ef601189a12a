//! An outbox row written by a single-statement mutation records the listed fields of
//! its product before and after (`change`, JSON) instead of the list counters: the
//! statement cannot run Rust, and the counters are derived from the change by one rule
//! (`catalog::lists::write_counters`) when the row is delivered. `NULL` in rows that
//! carry `list_counters`.
//!
//! On Postgres, `created_at` defaults to the database's `now()`, and every write leaves
//! it to the default: replayers compare a row's age with the same clock
//! (`now() - created_at`), never with an instance's.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CacheOutbox {
    Table,
    Change,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .add_column(text_null(CacheOutbox::Change))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE cache_outbox ALTER COLUMN created_at SET DEFAULT now()",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE cache_outbox ALTER COLUMN created_at DROP DEFAULT")
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(CacheOutbox::Table)
                    .drop_column(CacheOutbox::Change)
                    .to_owned(),
            )
            .await
    }
}
