//! The `larder` binary: `larder` (serve), `larder schema`, `larder seed --products N`.
use std::{process::ExitCode, sync::Arc};

use larder::{
    app::Application, cache::Cache, catalog::Catalog, config::Config, db, graphql, seed, telemetry,
};

const USAGE: &str = "usage: larder [serve | schema | seed --products N]
  serve                  run the server (default); settings come from the environment (see env.example)
  schema                 print the GraphQL schema (SDL), as checked in at schema.graphql
  seed --products N      append N generated products (batched inserts), then retire cached lists";

/// mimalloc instead of glibc's malloc: a cached read allocates and frees many small
/// buffers (keys, JSON, response values) across threads, where glibc spent ~18% of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of each runtime worker. Executing a GraphQL selection nests futures one level
/// per field; a debug build overflows 2 MiB (the default) at about 27 levels, and the
/// parser allows 32. 16 MiB leaves a wide margin in every build.
const WORKER_STACK: usize = 16 * 1024 * 1024;

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build()
    {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("larder: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["schema"] = args.as_slice() {
        print!("{}", graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("larder: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_json);
    let result = match args.as_slice() {
        [] | ["serve"] => serve(config).await,
        ["seed", "--products", n] => match n.parse::<u64>() {
            Ok(n) => seed(config, n).await,
            Err(_) => Err(format!("--products takes a whole number, got {n:?}")),
        },
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("larder: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn seed(config: Config, products: u64) -> Result<(), String> {
    let started = std::time::Instant::now();
    let db = db::connect(
        &config.database_url,
        config.db_max_connections,
        config.db_timeout,
    )
    .await
    .map_err(|e| e.to_string())?;
    let cache = Cache::from_config(&config).map_err(|e| e.to_string())?;
    if let Some(client) = cache.redis_client() {
        // Give the background connection a moment so the cache is retired, not skipped.
        use fred::interfaces::ClientLike;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), client.wait_for_connect())
            .await;
    }
    let catalog = Catalog::new(db, Arc::new(cache));
    let added = seed::seed_products(&catalog, products)
        .await
        .map_err(|e| format!("{e:?}"))?;
    println!(
        "inserted {added} products in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
