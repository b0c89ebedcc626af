//! Server-sent event endpoints: `GET /v1/sites/{site}/events` (the site's domain events, with
//! resumption) and `GET /v1/sites/{site}/availability/stream` (a snapshot, then the changed
//! counters of each event: no reservation ids, no customers).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use allot_shared::{AvailabilityQuery, Counter, EventData, ProblemKind, SiteId, StreamId};
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::auth::Need;
use super::error::ApiError;
use super::{AppState, Checked, no_query, site_from};
use crate::events::{self, HEARTBEAT_SECONDS, READ_COUNT_MAX, SubscriberSlot};
use crate::shutdown::Shutdown;
use crate::store::streams::{self, StreamEvent};

/// SSE events queued for one client before its writer waits.
const CLIENT_QUEUE_EVENTS: usize = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<String>,
}

type Sender = mpsc::Sender<Result<Event, Infallible>>;

fn sse(receiver: mpsc::Receiver<Result<Event, Infallible>>) -> Response {
    Sse::new(ReceiverStream::new(receiver))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(HEARTBEAT_SECONDS)).text("heartbeat"))
        .into_response()
}

fn resync(reason: &str, detail: &str) -> Event {
    Event::default().event("resync").data(serde_json::json!({ "reason": reason, "detail": detail }).to_string())
}

fn domain_event(event: &StreamEvent) -> Event {
    Event::default().id(event.id.to_string()).event(event.kind.clone()).data(event.data.clone())
}

/// The site's domain events as SSE, from a resume point.
pub async fn events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, b"")?;
    let site = site_from(path)?;
    let query: EventsQuery = serde_urlencoded::from_str(uri.query().unwrap_or(""))
        .map_err(|e| ApiError::malformed(format!("query: {e}")))?;
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("invalid").to_owned());
    let resume = match last_event_id.or(query.after) {
        None => None,
        Some(text) => Some(StreamId::parse(text.trim()).map_err(|_| {
            ApiError::malformed("Last-Event-ID and after must be a stream id such as 1700000000000-0, or 0")
        })?),
    };
    let slot = admit(&state)?;
    let live = state.events.subscribe(&site).await?;
    let mut connection = state.events.connection().await?;
    let position = streams::position(&mut connection, &site).await?;
    let (sender, receiver) = mpsc::channel(CLIENT_QUEUE_EVENTS);
    let start = match resume {
        None => position.last,
        Some(after) if position.lost_after(after) => {
            // Entries after the resume point were trimmed: the client must reload a snapshot.
            let detail =
                format!("events after {after} were trimmed (oldest kept: {}); reload and resume", position.first);
            let _ = sender.send(Ok(resync("trimmed", &detail))).await;
            drop(sender);
            return Ok(sse(receiver));
        }
        Some(after) => after,
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut sent = start;
        // History first, page by page, then the live feed (skipping what history already sent).
        let mut shutdown = state.events.shutdown();
        loop {
            let page = match streams::history(&mut connection, &site, sent, READ_COUNT_MAX).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, %site, "event history read failed");
                    let _ = sender.send(Ok(resync("unavailable", "the store is unavailable; reconnect"))).await;
                    return;
                }
            };
            // Trimming only ever removes the oldest entries: if, after this read, the oldest kept
            // entry is still at or before `sent`, nothing after `sent` was trimmed before it.
            match streams::position(&mut connection, &site).await {
                Ok(now) if now.lost_after(sent) => {
                    let detail = format!("events after {sent} were trimmed while replaying; reload and resume");
                    let _ = sender.send(Ok(resync("trimmed", &detail))).await;
                    return;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = sender.send(Ok(resync("unavailable", "the store is unavailable; reconnect"))).await;
                    return;
                }
            }
            let full = page.len() == READ_COUNT_MAX;
            for event in &page {
                if !send_or_stop(&sender, domain_event(event), &mut shutdown).await {
                    return;
                }
                sent = event.id;
            }
            if !full {
                break;
            }
        }
        // History is done: give its Redis connection back before the long live phase.
        drop(connection);
        forward_live(live, sent, &sender, shutdown, |event| Some(domain_event(event))).await;
    });
    Ok(sse(receiver))
}

fn admit(state: &AppState) -> Result<SubscriberSlot, ApiError> {
    state.events.admit().ok_or_else(|| {
        ApiError::new(
            ProblemKind::Unavailable,
            format!("this coordinator serves at most {} event subscribers", events::SUBSCRIBERS_MAX),
        )
    })
}

/// Queues one event for the client; `false` if the client left or shutdown fired first (a
/// client that stops reading must not hold up shutdown).
async fn send_or_stop(sender: &Sender, event: Event, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        _ = shutdown.wait() => false,
        sent = sender.send(Ok(event)) => sent.is_ok(),
    }
}

/// Sends live events newer than `sent` until the client leaves, the feed lags, or shutdown.
async fn forward_live(
    mut live: broadcast::Receiver<Arc<StreamEvent>>,
    mut sent: StreamId,
    sender: &Sender,
    mut shutdown: Shutdown,
    render: impl Fn(&StreamEvent) -> Option<Event>,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.wait() => return,
            _ = sender.closed() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(event) => {
                if event.id <= sent {
                    continue;
                }
                sent = event.id;
                if let Some(rendered) = render(&event)
                    && !send_or_stop(sender, rendered, &mut shutdown).await
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("allot_event_subscribers_lagged_total").increment(1);
                let detail = format!("this client fell {missed} events behind after {sent}; reload and resume");
                let _ = sender.send(Ok(resync("lagged", &detail))).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = sender.send(Ok(resync("unavailable", "the event feed stopped; reconnect"))).await;
                return;
            }
        }
    }
}

/// The counters of an event as browsers see them.
fn availability_change(site: &SiteId, event: &StreamEvent) -> Option<Event> {
    let data: EventData = serde_json::from_str(&event.data).ok()?;
    let counters: Vec<Counter> = data
        .counters
        .into_iter()
        .map(|c| Counter {
            remaining: c.capacity.saturating_sub(c.used),
            resource: c.resource,
            slot: c.slot,
            capacity: c.capacity,
            used: c.used,
            zones: None,
        })
        .collect();
    let body = serde_json::json!({ "site": site, "version": event.id, "counters": counters });
    Some(Event::default().id(event.id.to_string()).event("availability").data(body.to_string()))
}

/// A snapshot of the site's availability, then each change, as SSE.
pub async fn availability_stream(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, b"")?;
    let site = site_from(path)?;
    no_query(&uri, "this stream")?;
    let slot = admit(&state)?;
    // Join the feed before the snapshot, so no change falls between them.
    let live = state.events.subscribe(&site).await?;
    let snapshot = state.store.availability(&site, &AvailabilityQuery::default()).await?;
    let start = snapshot.version;
    let (sender, receiver) = mpsc::channel(CLIENT_QUEUE_EVENTS);
    let first = Event::default()
        .id(snapshot.version.to_string())
        .event("snapshot")
        .data(serde_json::to_string(&snapshot).unwrap_or_default());
    let _ = sender.send(Ok(first)).await;
    tokio::spawn(async move {
        let _slot = slot;
        forward_live(live, start, &sender, state.events.shutdown(), |event| availability_change(&site, event)).await;
    });
    Ok(sse(receiver))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ms: u64) -> Arc<StreamEvent> {
        Arc::new(StreamEvent { id: StreamId::new(ms, 0), kind: "capacity_changed".into(), data: "{}".into() })
    }

    /// Runs `forward_live` from `sent` until it stops; returns what it queued, rendered.
    async fn forwarded(live: broadcast::Receiver<Arc<StreamEvent>>, sent: StreamId) -> Vec<String> {
        let (sender, mut receiver) = mpsc::channel(16);
        let (_trigger, shutdown) = crate::shutdown::channel();
        forward_live(live, sent, &sender, shutdown, |e| Some(domain_event(e))).await;
        drop(sender);
        let mut queued = Vec::new();
        while let Some(Ok(event)) = receiver.recv().await {
            queued.push(format!("{event:?}"));
        }
        queued
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync_and_dropped() {
        let (feed, live) = broadcast::channel(2);
        for ms in 1..=5 {
            feed.send(event(ms)).expect("a receiver exists");
        }
        let sent = forwarded(live, StreamId::ZERO).await;
        assert_eq!(sent.len(), 1, "only the resync, nothing skipped silently: {sent:?}");
        assert!(sent[0].contains("resync") && sent[0].contains("lagged"), "{sent:?}");
    }

    #[tokio::test]
    async fn live_events_already_sent_are_not_sent_again() {
        let (feed, live) = broadcast::channel(8);
        for ms in 1..=4 {
            feed.send(event(ms)).expect("a receiver exists");
        }
        drop(feed);
        let ids = forwarded(live, StreamId::new(2, 0)).await;
        // 3 and 4, then the resync telling the client the feed stopped.
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids[0].contains("3-0") && ids[1].contains("4-0"), "{ids:?}");
    }
}
