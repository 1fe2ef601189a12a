//! Cache key names, spread over hash-tag groups. Every key carries the tag of one group,
//! so each multi-key command (an MGET, a fill or invalidation script) touches one Redis
//! Cluster hash slot. On a single Redis there is one group, `{<prefix>}`. On a cluster
//! there are `CACHE_GROUPS` (16 by default), `{<prefix><n>}`, their suffixes chosen so
//! group g's slot lies in the g-th of G equal slot ranges: the groups then spread evenly
//! over masters that own contiguous, equal ranges (what `redis-cli --cluster create`
//! makes). An item lives in group `id mod G`, a page in the group its name hashes to;
//! every group holds its own copy of the epoch, the history counter and each list
//! counter, so a read needs one command per group it touches and no key every read
//! touches pins one shard.
use super::stats::Kind;

/// The most groups a layout may have (`Snapshot::history` is sized by it).
pub use crate::config::MAX_CACHE_GROUPS as MAX_GROUPS;

const SLOTS: usize = 16_384;

#[derive(Clone, Debug)]
pub struct Keys {
    tags: Vec<String>,
}

impl Keys {
    /// One group (a single Redis, the in-process store) or `groups` (a cluster).
    pub fn new(prefix: &str, groups: usize) -> Self {
        let groups = groups.clamp(1, MAX_GROUPS);
        if groups == 1 {
            return Self {
                tags: vec![format!("{{{prefix}}}")],
            };
        }
        let mut tags = Vec::with_capacity(groups);
        for g in 0..groups {
            let range = g * SLOTS / groups..(g + 1) * SLOTS / groups;
            let tag = (0u32..)
                .map(|n| format!("{prefix}{n}"))
                .find(|t| range.contains(&slot(t)))
                .expect("every slot range is hit by some suffix");
            tags.push(format!("{{{tag}}}"));
        }
        Self { tags }
    }

    /// The keys of cache layout `layout` (`config::CACHE_LAYOUT`): layouts after 2 name
    /// their keys apart (`{<prefix>L<layout>:}`), so a late invalidation of an instance
    /// of another layout can never land in this one's entries; layout 2 predates the
    /// record, and its keys carry no number.
    pub fn for_layout(prefix: &str, layout: i32, groups: usize) -> Self {
        match layout {
            2 => Self::new(prefix, groups),
            n => Self::new(&format!("{prefix}L{n}:"), groups),
        }
    }

    pub fn groups(&self) -> usize {
        self.tags.len()
    }

    /// The group a key belongs to, from its hash tag (0 for a key of no group).
    pub fn group_of(&self, key: &str) -> usize {
        if self.tags.len() == 1 {
            return 0;
        }
        let tag = key.find('}').map_or("", |end| &key[..=end]);
        self.tags.iter().position(|t| t == tag).unwrap_or(0)
    }

    /// `clearCache` raises this, in every group to the same value; entries written under
    /// an older epoch read as misses.
    pub fn epoch(&self, group: usize) -> String {
        format!("{}epoch", self.tags[group])
    }

    /// Advanced in a group by every delivered invalidation that touches it; Postgres
    /// records each value reached (the outbox), so a group whose counter is behind has
    /// lost acknowledged writes.
    pub fn history(&self, group: usize) -> String {
        format!("{}hist", self.tags[group])
    }

    /// A group's copy of a list counter (`catalog::lists` names them, e.g. `c7:price`):
    /// bumped in every group by the writes that can change a page reading that field in
    /// that scope; a page reads the copy of its own group.
    pub fn counter(&self, group: usize, name: &str) -> String {
        format!("{}n:{name}", self.tags[group])
    }

    /// The copy of list counter `name` that the page stored under `page_key` reads.
    pub fn counter_of(&self, page_key: &str, name: &str) -> String {
        self.counter(self.group_of(page_key), name)
    }

    pub fn item(&self, kind: Kind, id: i32) -> String {
        let k = match kind {
            Kind::Product => "p",
            Kind::Category => "c",
            Kind::List | Kind::Response => "l",
        };
        let group = (id as u32 as usize) % self.tags.len();
        format!("{}{k}:{id}", self.tags[group])
    }

    /// A list page, named by a digest of its normalised arguments.
    pub fn list(&self, digest: &str) -> String {
        // FNV-1a: stable across processes and versions (the layout is shared).
        let hash = digest.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let group = (hash % self.tags.len() as u64) as usize;
        format!("{}l:{digest}", self.tags[group])
    }
}

impl Keys {
    /// A persisted query document (APQ) under its SHA-256 `hash` (hex), in the group
    /// the hash's first digits pick, next to that group's registry (`documents_index`).
    pub fn document(&self, hash: &str) -> String {
        let group = hash
            .get(..8)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .map_or(0, |n| (n % self.tags.len() as u64) as usize);
        format!("{}q:{hash}", self.tags[group])
    }

    /// A group's registry of documents: their hashes by expiry time (a sorted set) and
    /// their sizes with the group's total (a hash), which bound what it may hold.
    pub fn documents_index(&self, group: usize) -> [String; 2] {
        let tag = &self.tags[group];
        [format!("{tag}q#expiry"), format!("{tag}q#bytes")]
    }
}

/// The Redis Cluster hash slot of a hash tag's content.
fn slot(tag: &str) -> usize {
    usize::from(fred::util::redis_keyslot(tag.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_group_keeps_one_hash_tag() {
        let k = Keys::new("larder:", 1);
        for key in [
            k.epoch(0),
            k.counter(0, "all:members"),
            k.item(Kind::Product, 7),
            k.list("ab12"),
        ] {
            assert!(key.starts_with("{larder:}"), "{key}");
            assert_eq!(k.group_of(&key), 0);
        }
        assert_eq!(k.item(Kind::Product, 7), "{larder:}p:7");
        assert_eq!(k.document("ab"), "{larder:}q:ab");
    }

    #[test]
    fn groups_fall_in_evenly_spaced_slot_ranges() {
        let k = Keys::new("larder:", 16);
        assert_eq!(k.groups(), 16);
        for g in 0..16 {
            let key = k.epoch(g);
            let slot = usize::from(fred::util::redis_keyslot(key.as_bytes()));
            assert_eq!(slot / 1024, g, "{key} in slot {slot}");
            assert_eq!(k.group_of(&key), g);
            assert_eq!(k.group_of(&k.counter(g, "all:price")), g);
        }
        // Items by id, pages by name; a page reads its own group's counter copies.
        assert_eq!(k.group_of(&k.item(Kind::Product, 23)), 23 % 16);
        let page = k.list("p:abc");
        assert_eq!(
            k.group_of(&k.counter_of(&page, "all:members")),
            k.group_of(&page)
        );
        let spread: std::collections::HashSet<usize> = (0..200)
            .map(|i| k.group_of(&k.list(&format!("page{i}"))))
            .collect();
        assert_eq!(spread.len(), 16, "pages spread over every group");
        let hash = format!("{:08x}{}", 37, "e".repeat(56));
        assert_eq!(k.group_of(&k.document(&hash)), 37 % 16, "documents by hash");
        assert_eq!(k.group_of(&k.documents_index(5)[1]), 5);
    }
}
