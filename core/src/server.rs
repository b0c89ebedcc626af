//! Serving: the accept loop with graceful shutdown, and the background tasks beside it.

use tokio::net::TcpListener;

use crate::http::{AppState, app};
use crate::shutdown::Shutdown;
use crate::sweeper;

/// Serves `state` on `listener` until `shutdown` fires, then lets in-flight requests finish.
/// The hold sweeper runs beside the server for as long.
pub async fn run(listener: TcpListener, state: AppState, shutdown: Shutdown) -> std::io::Result<()> {
    let sweeper = tokio::spawn(sweeper::run(state.store.clone(), shutdown.clone()));
    let mut serve_shutdown = shutdown.clone();
    let result =
        axum::serve(listener, app(state)).with_graceful_shutdown(async move { serve_shutdown.wait().await }).await;
    let _ = sweeper.await;
    result
}
