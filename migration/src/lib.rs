//! Database migrations for larder, in order. Each file is one migration named
//! `mYYYYMMDD_NNNNNN_what`; the server runs them at start-up and the `migration`
//! binary runs them by hand (`up`, `down`, `status`, `fresh`).
pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_catalog;
mod m20261125_000002_cache_outbox;
mod m20261201_000001_outbox_list_counters;
mod m20261201_000002_outbox_delivered;
mod m20261202_000001_outbox_delivered_groups;
mod m20261203_000001_products_name_trigram;
mod m20261203_000002_outbox_change;
mod m20261204_000001_trust_lease;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_catalog::Migration),
            Box::new(m20261125_000002_cache_outbox::Migration),
            Box::new(m20261201_000001_outbox_list_counters::Migration),
            Box::new(m20261201_000002_outbox_delivered::Migration),
            Box::new(m20261202_000001_outbox_delivered_groups::Migration),
            Box::new(m20261203_000001_products_name_trigram::Migration),
            Box::new(m20261203_000002_outbox_change::Migration),
            Box::new(m20261204_000001_trust_lease::Migration),
        ]
    }
}
