//! The tracing subscriber: compact lines by default, JSON with `LOG_FORMAT=json`;
//! `RUST_LOG` filters (default: larder at info, the SQL driver at warn).
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,fred=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init`: a second call (tests spawning several apps) is a no-op, not a panic.
    let _ = if json {
        registry
            .with(fmt::layer().json().with_current_span(true))
            .try_init()
    } else {
        registry.with(fmt::layer().compact()).try_init()
    };
}
