//! A check that runs before async-graphql sees a document: the number of fields a
//! query expands to once every fragment spread is inlined. async-graphql's own depth,
//! complexity and recursion checks walk fragment spreads without memoising them, so a
//! "fragment bomb" (each fragment spreading the next twice) makes them take time
//! exponential in the document's length, on the request's worker thread, where no
//! timeout can interrupt it. Here each fragment is measured once.
use std::collections::HashMap;

use async_graphql::{
    Name, Positioned,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// Most fields a document may expand to (introspection, the largest normal query, is
/// about 200).
pub const MAX_EXPANDED_FIELDS: usize = 10_000;

/// Deepest bracket nesting (`{`, `[`, `(`) a query text may have. The parser recurses
/// once per level; this bound keeps it far from the end of a worker's stack (the
/// binary gives each 16 MiB, `main.rs`; even 2 MiB would hold it).
pub const MAX_NESTING: usize = 128;

/// A linear scan of the raw text, before parsing: `Err` when brackets nest deeper than
/// `max`. Strings, block strings and comments are skipped.
pub fn check_nesting(query: &str, max: usize) -> Result<(), String> {
    let bytes = query.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max {
                    return Err(format!("the query nests brackets more than {max} deep"));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// `Err` with a client-safe message when the document expands beyond `limit` fields.
pub fn check_expansion(doc: &ExecutableDocument, limit: usize) -> Result<(), String> {
    let mut sizes: HashMap<Name, Option<usize>> = HashMap::new();
    let mut total = 0usize;
    for (_, op) in doc.operations.iter() {
        total = total.saturating_add(size(doc, &op.node.selection_set, &mut sizes, limit, 0)?);
        if total > limit {
            return Err(too_large(limit));
        }
    }
    Ok(())
}

fn too_large(limit: usize) -> String {
    format!("the query expands to more than {limit} fields")
}

/// Fields of `set` with fragments inlined. `sizes` memoises fragments (`None` while one
/// is being measured, so a cycle is reported rather than followed).
fn size(
    doc: &ExecutableDocument,
    set: &Positioned<SelectionSet>,
    sizes: &mut HashMap<Name, Option<usize>>,
    limit: usize,
    depth: usize,
) -> Result<usize, String> {
    // The parser bounds nesting already; this keeps the walk's own stack bounded too.
    if depth > 256 {
        return Err("the query is nested too deep".into());
    }
    let mut n = 0usize;
    for item in &set.node.items {
        let add = match &item.node {
            Selection::Field(f) => 1 + size(doc, &f.node.selection_set, sizes, limit, depth + 1)?,
            Selection::InlineFragment(f) => {
                size(doc, &f.node.selection_set, sizes, limit, depth + 1)?
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                match sizes.get(name) {
                    Some(Some(known)) => *known,
                    Some(None) => return Err(format!("fragment {name} spreads itself")),
                    None => match doc.fragments.get(name) {
                        // Unknown fragments are reported by validation.
                        None => 0,
                        Some(fragment) => {
                            sizes.insert(name.clone(), None);
                            let s =
                                size(doc, &fragment.node.selection_set, sizes, limit, depth + 1)?;
                            sizes.insert(name.clone(), Some(s));
                            s
                        }
                    },
                }
            }
        };
        n = n.saturating_add(add);
        if n > limit {
            return Err(too_large(limit));
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::parser::parse_query;

    fn bomb(levels: usize) -> String {
        let mut q = String::from("{ ...F0 } ");
        for i in 0..levels {
            q += &format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1);
        }
        q + &format!("fragment F{levels} on Query {{ __typename }}")
    }

    #[test]
    fn a_fragment_bomb_is_measured_in_linear_time_and_refused() {
        let doc = parse_query(bomb(30)).unwrap();
        let started = std::time::Instant::now();
        assert!(check_expansion(&doc, MAX_EXPANDED_FIELDS).is_err());
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        // 2^13 = 8192 fields: under the limit; 2^14 is over it.
        assert!(check_expansion(&parse_query(bomb(13)).unwrap(), MAX_EXPANDED_FIELDS).is_ok());
        assert!(check_expansion(&parse_query(bomb(14)).unwrap(), MAX_EXPANDED_FIELDS).is_err());
    }

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert!(check_nesting("{ a(x: [[1]]) { b } }", 4).is_ok());
        assert!(check_nesting("{ a(x: [[1]]) { b } }", 3).is_err());
        assert!(check_nesting(r#"{ a(s: "{{{{[[[[") } # ((((((("#, 2).is_ok());
        assert!(check_nesting(r#"{ a(s: """ {{{{ \""" [[[[ """) }"#, 2).is_ok());
        assert!(
            check_nesting(
                &format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
                MAX_NESTING
            )
            .is_err()
        );
    }

    #[test]
    fn ordinary_queries_and_cycles() {
        let doc = parse_query("{ a { b c } ...X } fragment X on Query { d }").unwrap();
        assert!(check_expansion(&doc, 4).is_ok());
        assert!(check_expansion(&doc, 3).is_err());
        let cyc = parse_query("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")
            .unwrap();
        assert!(check_expansion(&cyc, 100).is_err());
    }
}
