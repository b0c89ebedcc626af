//! Serving: the accept loop with graceful shutdown, and the background tasks beside it.

use std::time::Duration;

use tokio::net::TcpListener;

use crate::http::{AppState, app};
use crate::shutdown::Shutdown;
use crate::sweeper;

/// How long in-flight requests may take to finish after shutdown begins; connections still
/// open after that (a client that stopped reading, say) are dropped.
pub const SHUTDOWN_GRACE_MS: u64 = 30_000;

/// Serves `state` on `listener` until `shutdown` fires, then lets in-flight requests finish
/// (within `SHUTDOWN_GRACE_MS`). The hold sweeper runs beside the server for as long.
pub async fn run(listener: TcpListener, state: AppState, shutdown: Shutdown) -> std::io::Result<()> {
    let sweeper = tokio::spawn(sweeper::run(state.store.clone(), shutdown.clone()));
    let mut serve_shutdown = shutdown.clone();
    let serving = axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { serve_shutdown.wait().await })
        .into_future();
    let mut grace = shutdown.clone();
    let result = tokio::select! {
        result = serving => result,
        () = async move {
            grace.wait().await;
            tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)).await;
        } => {
            tracing::warn!("requests still open {SHUTDOWN_GRACE_MS} ms after shutdown began; dropping them");
            Ok(())
        }
    };
    let _ = sweeper.await;
    result
}
