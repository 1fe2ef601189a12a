//! Cache key names. Every key of one app shares the hash tag `{<prefix>}`, so each
//! multi-key command (MGET, the fill and invalidate scripts) touches one Redis Cluster
//! hash slot. The price is that one app's cache lives on one shard (the Redis Cluster
//! issue spreads them over hash-tag groups; see the README's design note).
use super::stats::Kind;

#[derive(Clone, Debug)]
pub struct Keys {
    tag: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }

    /// `clearCache` bumps this; entries written under an older epoch read as misses.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.tag)
    }

    /// Advanced by every delivered invalidation; Postgres records each value it reached
    /// (the outbox), so a Redis whose counter is behind has lost acknowledged writes.
    pub fn history(&self) -> String {
        format!("{}hist", self.tag)
    }

    /// A list counter (`catalog::lists` names them, e.g. `c7:price`): bumped by the
    /// writes that can change a page reading that field in that scope.
    pub fn counter(&self, name: &str) -> String {
        format!("{}n:{name}", self.tag)
    }

    pub fn item(&self, kind: Kind, id: i32) -> String {
        let k = match kind {
            Kind::Product => "p",
            Kind::Category => "c",
            Kind::List | Kind::Response => "l",
        };
        format!("{}{k}:{id}", self.tag)
    }

    /// A list page, named by a digest of its normalised arguments.
    pub fn list(&self, digest: &str) -> String {
        format!("{}l:{digest}", self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_one_hash_tag() {
        let k = Keys::new("larder:");
        for key in [
            k.epoch(),
            k.counter("all:members"),
            k.item(Kind::Product, 7),
            k.list("ab12"),
        ] {
            assert!(key.starts_with("{larder:}"), "{key}");
        }
        assert_eq!(k.item(Kind::Product, 7), "{larder:}p:7");
    }
}
