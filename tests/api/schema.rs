//! `schema.graphql` is generated from the code (`larder schema`); this fails on drift.
#[test]
fn checked_in_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let generated = larder::graphql::sdl();
    assert!(
        on_disk == generated,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql` and commit it"
    );
}
