//! fred's settings for a cache client (see the store's header): background connects
//! retried forever, one attempt per command, a bounded buffer, unresponsive-connection
//! detection.
use std::time::Duration;

use fred::{prelude::*, types::config::UnresponsiveConfig};

use crate::cache::CacheError;

/// A fred client configured as a cache client (see the module header), not connected.
pub(super) fn build(config: &Config, timeout: Duration) -> Result<Client, CacheError> {
    let mut config = config.clone();
    // Retry the very first connection too, so the server starts while Redis is down.
    config.fail_fast = false;
    Ok(Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(1);
            c.internal_command_timeout = Duration::from_secs(1);
            // A cache command is worth one try: a miss is cheaper than a retry.
            c.max_command_attempts = 1;
            c.max_command_buffer_len = 10_000;
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(Duration::from_secs(2)),
                interval: Duration::from_millis(500),
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        // 0 attempts = forever; 50 ms doubling up to 2 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
        .build()?)
}
