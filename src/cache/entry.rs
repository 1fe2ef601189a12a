//! The versioned entry format and the two rules that make the cache safe. The Redis
//! backend runs the same rules in Lua (`redis/scripts.rs`), the in-process backend in
//! Rust, and the tests hold both to this file.
//!
//! Stored forms (a one-letter tag, then `|`-separated fields):
//! - `V|<version>|<epoch>|<json>`: a row at `version`, filled under cache `epoch`.
//! - `P|<version>`: pending tombstone left by a write: nothing older than `version` may fill.
//! - `G|<version>`: the row was deleted (ids are never reused): reads answer "none",
//!   and no fill is accepted.
//! - `A|<epoch>`: no such row (cached miss, short TTL); any row of any version replaces it.
//! - `L|<tags>|<epoch>|<json>`: a list page (ids and count), tagged with the values of
//!   the list counters it depends on (`12.40.7`), read before its SQL ran.

/// A decoded item entry; `data` borrows the JSON of a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Value {
        version: i64,
        epoch: u64,
        data: &'a str,
    },
    Pending {
        version: i64,
    },
    Gone {
        version: i64,
    },
    Absent {
        epoch: u64,
    },
    List {
        tags: &'a str,
        epoch: u64,
        data: &'a str,
    },
}

impl<'a> Entry<'a> {
    /// Parses a stored entry; anything unreadable is `None` and treated as a miss.
    pub fn parse(raw: &'a str) -> Option<Self> {
        let (tag, rest) = raw.split_once('|')?;
        match tag {
            "V" | "L" => {
                let mut parts = rest.splitn(3, '|');
                let first = parts.next()?;
                let epoch = parts.next()?.parse().ok()?;
                let data = parts.next()?;
                if tag == "V" {
                    Some(Entry::Value {
                        version: first.parse().ok()?,
                        epoch,
                        data,
                    })
                } else {
                    Some(Entry::List {
                        tags: first,
                        epoch,
                        data,
                    })
                }
            }
            "P" => Some(Entry::Pending {
                version: rest.parse().ok()?,
            }),
            "G" => Some(Entry::Gone {
                version: rest.parse().ok()?,
            }),
            "A" => Some(Entry::Absent {
                epoch: rest.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// The version a stored entry guards, for the rules below (`None` when it guards
    /// none: absent markers and list pages).
    fn floor(&self) -> Option<i64> {
        match self {
            Entry::Value { version, .. } | Entry::Pending { version } => Some(*version),
            _ => None,
        }
    }
}

pub fn value(version: i64, epoch: u64, json: &str) -> String {
    format!("V|{version}|{epoch}|{json}")
}

pub fn absent(epoch: u64) -> String {
    format!("A|{epoch}")
}

pub fn pending(version: i64) -> String {
    format!("P|{version}")
}

pub fn gone(version: i64) -> String {
    format!("G|{version}")
}

pub fn list(tags: &str, epoch: u64, json: &str) -> String {
    format!("L|{tags}|{epoch}|{json}")
}

/// The tag of a page built under these counter values.
pub fn tags(values: &[u64]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(values.len() * 12);
    for (i, v) in values.iter().enumerate() {
        let _ = write!(out, "{}{v}", if i > 0 { "." } else { "" });
    }
    out
}

/// Rule 1, the conditional fill: may a reader store a row of `version` (0 = "absent")
/// over `current`? Never over a deletion; never below a value or tombstone of a newer
/// version; a value of the same version as a tombstone replaces it.
pub fn fill_allowed(current: Option<&str>, version: i64) -> bool {
    match current.and_then(Entry::parse) {
        Some(Entry::Gone { .. }) => false,
        Some(e) => e.floor().is_none_or(|floor| version >= floor),
        None => true,
    }
}

/// Rule 2, the invalidation after a commit: does a tombstone for `version` (a deletion
/// if `gone`) replace `current`? A deletion always does, unless one is there; a pending
/// tombstone does unless something of that version or newer is there already (writes
/// of one row can reach the cache out of order).
pub fn mark_allowed(current: Option<&str>, version: i64, gone: bool) -> bool {
    match current.and_then(Entry::parse) {
        Some(Entry::Gone { .. }) => false,
        _ if gone => true,
        Some(e) => e.floor().is_none_or(|floor| floor < version),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_including_json_with_bars() {
        let v = value(3, 7, r#"{"name":"a|b"}"#);
        assert_eq!(
            Entry::parse(&v),
            Some(Entry::Value {
                version: 3,
                epoch: 7,
                data: r#"{"name":"a|b"}"#
            })
        );
        assert_eq!(
            Entry::parse(&pending(4)),
            Some(Entry::Pending { version: 4 })
        );
        assert_eq!(Entry::parse(&gone(5)), Some(Entry::Gone { version: 5 }));
        assert_eq!(Entry::parse(&absent(2)), Some(Entry::Absent { epoch: 2 }));
        assert_eq!(Entry::parse("garbage"), None);
    }

    #[test]
    fn an_old_version_can_not_fill_over_a_newer_tombstone_or_value() {
        assert!(!fill_allowed(Some(&pending(5)), 4));
        assert!(fill_allowed(Some(&pending(5)), 5));
        assert!(!fill_allowed(Some(&value(5, 0, "{}")), 4));
        assert!(fill_allowed(Some(&value(5, 0, "{}")), 6));
        assert!(!fill_allowed(Some(&gone(5)), 9));
        assert!(fill_allowed(None, 1));
    }

    #[test]
    fn absent_markers_never_hide_a_row_that_exists() {
        // A reader that saw no row may not cover a creation's tombstone or a row.
        assert!(!fill_allowed(Some(&pending(1)), 0));
        assert!(!fill_allowed(Some(&value(1, 0, "{}")), 0));
        // A reader that saw a row replaces an absent marker.
        assert!(fill_allowed(Some(&absent(0)), 1));
        assert!(fill_allowed(None, 0));
    }

    #[test]
    fn tombstones_keep_the_highest_version_and_deletions_are_final() {
        assert!(!mark_allowed(Some(&pending(7)), 6, false));
        assert!(mark_allowed(Some(&pending(6)), 7, false));
        assert!(mark_allowed(Some(&value(6, 0, "{}")), 7, false));
        assert!(!mark_allowed(Some(&value(7, 0, "{}")), 7, false));
        assert!(mark_allowed(Some(&value(9, 0, "{}")), 1, true));
        assert!(!mark_allowed(Some(&gone(3)), 9, false));
        assert!(mark_allowed(Some(&absent(0)), 1, false));
    }
}
