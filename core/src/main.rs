//! The `allot` binary: parses flags, sets up logging, and runs the command.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use allot_core::cli::{Cli, Command, LogFormat};

/// mimalloc instead of glibc's malloc: under reservation load, glibc's allocator took about 18 %
/// of the coordinator's CPU in `perf` (see BENCHMARKS.md, "Profile").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
            match args.log_format {
                LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
                LogFormat::Json => tracing_subscriber::fmt().json().with_env_filter(filter).init(),
            }
            allot_core::serve(args).await
        }
        Command::Events(args) => {
            // Stdout carries the events; what the reader has to say goes to stderr.
            let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
            tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).init();
            events(args).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("allot: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn events(args: allot_core::cli::EventsArgs) -> anyhow::Result<()> {
    let site = allot_shared::SiteId::parse(&args.site)?;
    let (trigger, shutdown) = allot_core::shutdown::channel();
    tokio::spawn(async move {
        allot_core::shutdown::os_signal().await;
        trigger.fire();
    });
    let after = match &args.after {
        Some(text) => Some(allot_shared::StreamId::parse(text)?),
        None => None,
    };
    let options = allot_core::reader::ReadOptions {
        site,
        follow: args.follow,
        after,
        group: args.group,
        consumer: args.consumer,
    };
    let target = args.redis.target().context("give --redis-url or --redis-sentinels")?;
    allot_core::reader::run(&target, options, shutdown).await.map(|_| ())
}
