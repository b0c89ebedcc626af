//! The Allot coordinator: strict atomic capacity counters on Redis behind the HTTP contract of
//! `shared/API.md`. `main.rs` is a thin wrapper over [`serve`]; tests drive [`http::app`]
//! directly or run the binary.

pub mod activity;
pub mod cli;
pub mod coalesce;
pub mod embedded;
pub mod events;
pub mod http;
pub mod metrics;
pub mod reader;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod sweeper;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::cli::ServeArgs;
use crate::embedded::EmbeddedRedis;
use crate::http::AppState;
use crate::http::auth::Auth;
use crate::store::Store;
use crate::store::connection::RedisTarget;

/// Runs `allot serve` until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let auth = Auth::new(args.admin_token.as_deref(), args.edge_secret.as_deref());
    if auth.is_dev_mode() && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} in dev mode (no credentials): set ALLOT_ADMIN_TOKEN and ALLOT_EDGE_SECRET, or listen on a loopback address",
            args.listen
        );
    }
    if auth.is_dev_mode() {
        tracing::warn!("dev mode: no ALLOT_ADMIN_TOKEN or ALLOT_EDGE_SECRET, every request is allowed (loopback only)");
    }
    let (trigger, shutdown) = shutdown::channel();
    // The embedded Redis has its own signal, fired only once the server has drained, so the
    // requests still in flight at SIGTERM can finish against it.
    let (redis_trigger, redis_shutdown) = shutdown::channel();
    let mut embedded = None;
    let target = match args.redis.target() {
        Some(target) => target,
        None => {
            let started = EmbeddedRedis::start(&args.data_dir, redis_shutdown).await?;
            let target = RedisTarget::Standalone { url: started.url.clone() };
            embedded = Some(started);
            target
        }
    };
    let acks = args.ack_settings();
    let store = Store::open(&target, args.store_settings())?.acknowledge_with(acks, shutdown.clone());
    store.connector().spawn_follower(shutdown.clone());
    tracing::info!(?target, ack_replicas = acks.replicas, ack_timeout_ms = acks.timeout_ms, "redis");
    if let Err(error) = store.load_functions().await {
        tracing::warn!(%error, "redis is not answering yet; serving 503 until it does");
    }
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, "allot coordinator listening");
    let events = events::EventHub::new(store.connector().clone(), shutdown.clone());
    let reservations = coalesce::Coalescer::start(store.clone(), usize::from(args.reserve_batch_max));
    let state =
        AppState { store, auth, metrics: metrics::handle(), events, activity: Default::default(), reservations };
    tokio::spawn(async move {
        shutdown::os_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        trigger.fire();
    });
    let served = server::run(listener, state, shutdown).await;
    redis_trigger.fire();
    if let Some(embedded) = embedded {
        embedded.stopped().await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}
