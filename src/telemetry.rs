//! The tracing subscriber: compact lines by default, JSON with `LOG_FORMAT=json`;
//! `RUST_LOG` filters (default: larder at info, the SQL driver at warn).
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init(json: bool) {
    // An empty RUST_LOG counts as unset (an empty filter would silence everything,
    // including the line that prints a generated admin token).
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new("info,sqlx=warn,sea_orm=warn,fred=warn"));
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
