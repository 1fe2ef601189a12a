//! Persisted query documents in Redis: one key per document in the group its hash
//! picks, registered by a script that keeps each group within its share of the bounds
//! (`scripts::REGISTER_LUA`; see `cache::documents`).
use fred::prelude::*;

use super::RedisStore;
use crate::cache::{
    CacheError,
    documents::{Limits, Registration},
};

impl RedisStore {
    /// The document stored under `hash`, from the node of its group.
    pub async fn document(&self, hash: &str) -> Result<Option<String>, CacheError> {
        let key = self.keys.document(hash);
        let node = self.node(self.keys.group_of(&key))?;
        let get = node.client.get::<Option<String>, _>(key);
        self.run(&node, self.timeout, get).await
    }

    /// Registers `document` within its group's share of `limits` (`lua::REGISTER_LUA`).
    pub async fn register_document(
        &self,
        hash: &str,
        document: &str,
        limits: Limits,
    ) -> Result<Registration, CacheError> {
        let key = self.keys.document(hash);
        let group = self.keys.group_of(&key);
        let node = self.node(group)?;
        let share = self.keys.groups() as u64;
        let [expiry, bytes] = self.keys.documents_index(group);
        let args = vec![
            hash.to_string(),
            document.to_string(),
            limits.ttl.as_millis().max(1).to_string(),
            (limits.max_count / share).max(1).to_string(),
            (limits.max_bytes / share).max(1).to_string(),
        ];
        let script = self.scripts.register.evalsha_with_reload::<i64, _, _>(
            &node.client,
            vec![key, expiry, bytes],
            args,
        );
        Ok(match self.run(&node, self.timeout, script).await? {
            1 => Registration::Stored,
            2 => Registration::Known,
            _ => Registration::Full,
        })
    }
}
