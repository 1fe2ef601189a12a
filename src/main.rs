//! The `larder` binary: parse the command line, start the runtime, run one command.
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use larder::{app::Application, config::Config, graphql, seed, telemetry};

/// mimalloc instead of glibc's malloc: a cached read allocates and frees many small
/// buffers (keys, JSON, response values) across threads, where glibc spent ~18% of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stack of each runtime worker. Executing a GraphQL selection nests futures one level
/// per field; a debug build overflows 2 MiB (the default) at about 27 levels, and the
/// parser allows 32. 16 MiB leaves a wide margin in every build.
const WORKER_STACK: usize = 16 * 1024 * 1024;

/// A GraphQL product catalog whose resolvers read through a versioned cache.
/// Settings come from the environment (and `.env`); see env.example.
#[derive(Parser)]
#[command(name = "larder", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Print the GraphQL schema (SDL), as checked in at schema.graphql.
    Schema,
    /// Append generated products in batched inserts, then retire every cached entry.
    Seed {
        /// How many products to append.
        #[arg(long)]
        products: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Schema) = cli.command {
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK)
        .build();
    let rt = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("larder: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(config.log_json);
    match raise_open_files() {
        Some((before, now)) => tracing::info!(before, now, "open-file limit (RLIMIT_NOFILE)"),
        None => tracing::warn!("could not read the open-file limit (RLIMIT_NOFILE)"),
    }
    let result = rt.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => serve(config).await,
            Some(Command::Seed { products }) => seed::command(config, products).await,
            Some(Command::Schema) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("larder: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one and returns (before, now): every
/// connection is a file, and the usual soft limit (1,024) refuses connections long
/// before the server is busy.
fn raise_open_files() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct it is given, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Some((before, before));
        }
    }
    Some((before, limit.rlim_cur))
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}
