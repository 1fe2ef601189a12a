//! sea-orm entities: the tables as stored. GraphQL types live in `graphql::types` and
//! the cache's copies in `catalog::model`; neither exposes these directly.
pub mod category {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "categories")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(unique)]
        pub name: String,
        #[sea_orm(unique)]
        pub slug: String,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod product {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "products")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
        pub description: String,
        /// Exact money: integer cents.
        pub price_cents: i64,
        pub category_id: i32,
        pub stock_quantity: i32,
        /// Starts at 1; every update adds 1. The cache never lets a lower version
        /// replace a higher one.
        pub version: i32,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod cache_outbox {
    use sea_orm::entity::prelude::*;

    /// An invalidation recorded with its write, until Redis acknowledges it.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cache_outbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub product_id: i32,
        pub version: i64,
        pub gone: bool,
        pub new_category_id: Option<i32>,
        pub created_at: ChronoDateTimeUtc,
        /// List counters to bump, space-separated; NULL in rows older than the column.
        pub list_counters: Option<String>,
        /// Redis's history counter after this row's delivery (the highest of its
        /// groups'); NULL until delivered.
        pub delivered_seq: Option<i64>,
        /// Each key group's history counter after the delivery, `group:value ...`;
        /// NULL in rows delivered before the column (one group).
        pub delivered_hist: Option<String>,
        /// The listed fields before and after a single-statement write (`db::writes`),
        /// from which its list counters follow; NULL when `list_counters` says them.
        pub change: Option<String>,
        /// Its writer stopped waiting for Redis to take it (`catalog::lease`): until it
        /// is delivered, no instance's trust lease covers what it names.
        pub gave_up: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
