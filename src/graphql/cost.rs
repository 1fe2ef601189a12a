//! What a field costs in a query's complexity (`QUERY_MAX_COMPLEXITY`): its items times
//! their selection, plus the SQL statements it may cause, priced high, so a document
//! that could run hundreds of statements is refused before anything runs.
use super::types::MAX_FIRST;

/// The complexity one SQL statement a field can cause weighs: a list field that misses
/// the cache runs two (the page's ids, the count), so its cost is not that of one field
/// (`QUERY_MAX_SQL_STATEMENTS` bounds what actually runs; this refuses before running).
pub const SQL_WEIGHT: usize = 50;

/// Highest cost any one field is given: sums of many such fields stay far from
/// `usize::MAX` (async-graphql adds them without saturating), however deep lists nest.
const COST_CAP: usize = 1 << 40;

/// The complexity of a list of `n` items of `child` each that may cost `statements` SQL
/// statements: saturating, and capped.
pub fn list_cost(n: usize, child: usize, statements: usize) -> usize {
    n.max(1)
        .saturating_mul(child)
        .saturating_add(1)
        .saturating_add(statements * SQL_WEIGHT)
        .min(COST_CAP)
}

/// `products(first:)` and `Category.products(first:)`: a page of `first` and its count.
pub fn page_cost(first: i32, child: usize) -> usize {
    list_cost(first.clamp(1, MAX_FIRST) as usize, child, 2)
}
