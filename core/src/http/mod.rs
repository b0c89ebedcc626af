//! The coordinator's HTTP surface (`../shared/API.md`): routing, request checks, and the
//! mapping of store outcomes to status codes. It never changes state itself: every change is
//! one store call.

pub mod auth;
pub mod error;
mod observe;
mod pages;
mod stream;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use allot_shared::limits::{BODY_BYTES_MAX, CAPACITY_BODY_BYTES_MAX};
use allot_shared::{
    AvailabilityQuery, CapacityRequest, IdempotencyKey, ProblemKind, ReservationId, ReservationRequest, SiteId,
};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, OriginalUri, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use self::auth::{Auth, Need};
use self::error::ApiError;
use crate::activity::{Attempt, WINDOW_SECONDS};
use crate::store::{CapacityOutcome, ConfirmOutcome, ReserveOutcome, Store, StoreError};

/// Longest time one request may take in all before it is answered 503.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The Redis store.
    pub store: Store,
    /// Accepted credentials.
    pub auth: Auth,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Fans the sites' event streams out to SSE subscribers.
    pub events: crate::events::EventHub,
    /// Placed and refused attempts per site and second, for the dashboard.
    pub activity: crate::activity::Activity,
    /// The reserve path: coalesces concurrent reservations of a site into one script call.
    pub reservations: crate::coalesce::Coalescer,
}

/// The coordinator's router, ready to serve or to drive with `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let v1 = Router::new()
        .route("/v1/sites/{site}/capacity", put(set_capacity).layer(DefaultBodyLimit::max(CAPACITY_BODY_BYTES_MAX)))
        .route("/v1/sites/{site}/availability", get(availability))
        .route("/v1/sites/{site}/availability/stream", get(stream::availability_stream))
        .route("/v1/sites/{site}/events", get(stream::events))
        .route("/v1/sites/{site}/stats", get(stats))
        .route("/v1/sites/{site}/reservations", post(reserve))
        .route("/v1/sites/{site}/reservations/{id}", get(read_reservation).delete(cancel))
        .route("/v1/sites/{site}/reservations/{id}/confirm", post(confirm))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX));
    Router::new()
        .merge(v1)
        .merge(pages::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(REQUEST_TIMEOUT_MS),
        ))
        .layer(CatchPanicLayer::new())
        // Outside the timeout and panic layers, so their bare statuses become problems too.
        .layer(axum::middleware::from_fn(observe::problems_and_metrics))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A request body read within the route's limit; too large is 413, unreadable is 400.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state).await.map(Body).map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ProblemKind::PayloadTooLarge, rejection.body_text())
            } else {
                ApiError::malformed(rejection.body_text())
            }
        })
    }
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn site_from(path: Result<Path<String>, PathRejection>) -> Result<SiteId, ApiError> {
    let Path(site) = path.map_err(|e| ApiError::malformed(e.body_text()))?;
    SiteId::parse(&site).map_err(|e| ApiError::malformed(e.to_string()))
}

fn site_and_id_from(path: Result<Path<(String, String)>, PathRejection>) -> Result<(SiteId, ReservationId), ApiError> {
    let Path((site, id)) = path.map_err(|e| ApiError::malformed(e.body_text()))?;
    let site = SiteId::parse(&site).map_err(|e| ApiError::malformed(e.to_string()))?;
    let id = ReservationId::parse(&id).map_err(|e| ApiError::malformed(e.to_string()))?;
    Ok((site, id))
}

/// 400 for a query string on an endpoint that takes none (`what` names it in the detail).
fn no_query(uri: &OriginalUri, what: &str) -> Result<(), ApiError> {
    match uri.query() {
        Some(query) if !query.is_empty() => Err(ApiError::malformed(format!("{what} takes no query"))),
        _ => Ok(()),
    }
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(ProblemKind::UnsupportedMediaType, "send the body with Content-Type: application/json"))
    }
}

struct Checked<'a> {
    state: &'a AppState,
    method: &'a Method,
    uri: &'a OriginalUri,
    headers: &'a HeaderMap,
}

impl Checked<'_> {
    fn authorize(&self, need: Need, body: &[u8]) -> Result<(), ApiError> {
        let path_and_query = self.uri.path_and_query().map_or("/", |p| p.as_str());
        self.state.auth.check(need, self.method, path_and_query, self.headers, body, now_seconds()).map(|_| ())
    }
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "response serialization failed");
            ApiError::new(ProblemKind::Internal, "internal error").into_response()
        }
    }
}

async fn set_capacity(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Admin, &body)?;
    let site = site_from(path)?;
    require_json(&headers)?;
    let request = CapacityRequest::parse(&body)?;
    match state.store.set_capacity(&site, &request).await? {
        CapacityOutcome::Set(availability) => Ok(json_response(StatusCode::OK, &availability)),
        CapacityOutcome::TooManyCounters { existing, new } => Err(ApiError::new(
            ProblemKind::ValidationFailed,
            format!(
                "the site has {existing} counters and this adds {new}; a site holds at most {}",
                allot_shared::limits::COUNTERS_PER_SITE_MAX
            ),
        )),
    }
}

async fn availability(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, b"")?;
    let site = site_from(path)?;
    let query = AvailabilityQuery::parse(uri.query())?;
    let availability = state.store.availability(&site, &query).await?;
    let etag = format!("\"{}\"", availability.version);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut response =
        if matches { StatusCode::NOT_MODIFIED.into_response() } else { json_response(StatusCode::OK, &availability) };
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn reserve(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, &body)?;
    let site = site_from(path)?;
    require_json(&headers)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| IdempotencyKey::parse(v).ok())
                .ok_or_else(|| ApiError::malformed("Idempotency-Key must be 1..=255 printable ASCII characters"))?,
        ),
    };
    let request = ReservationRequest::parse(&body)?;
    let id = ReservationId::from_random_bytes(*uuid::Uuid::new_v4().as_bytes());
    let outcome = match state.reservations.reserve(&site, &request, idempotency_key.as_ref(), &id).await {
        Ok(outcome) => outcome,
        // The call may have run before its answer was lost: the id it would have.
        Err(StoreError::Unavailable(cause)) => {
            tracing::warn!(error = %cause, "store unavailable during a reservation");
            return Err(ApiError::unknown_outcome(Some(id), "the store became unavailable"));
        }
        Err(error) => return Err(error.into()),
    };
    let label = match &outcome {
        ReserveOutcome::Placed(_) => "placed",
        ReserveOutcome::Replayed(_) => "replayed",
        ReserveOutcome::KeyReused => "key_reused",
        ReserveOutcome::ZoneNotAllowed(_) => "zone_not_allowed",
        ReserveOutcome::Insufficient(_) => "insufficient",
    };
    metrics::counter!("allot_reservations_total", "outcome" => label).increment(1);
    match &outcome {
        ReserveOutcome::Placed(_) => state.activity.record(&site, now_seconds(), Attempt::Placed),
        ReserveOutcome::ZoneNotAllowed(_) | ReserveOutcome::Insufficient(_) => {
            state.activity.record(&site, now_seconds(), Attempt::Refused);
        }
        ReserveOutcome::Replayed(_) | ReserveOutcome::KeyReused => {}
    }
    match outcome {
        ReserveOutcome::Placed(reservation) => {
            if request.hold_seconds.is_some()
                && let Err(error) = state.store.note_site_with_holds(&site).await
            {
                // The hold is placed; reads, confirms and the sweeper's periodic rescan still end it.
                tracing::warn!(%error, %site, "could not index the site's hold for the sweeper");
            }
            let mut response = json_response(StatusCode::CREATED, &reservation);
            if let Ok(location) = HeaderValue::from_str(&format!("/v1/sites/{site}/reservations/{}", reservation.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        ReserveOutcome::Replayed(reservation) => {
            let mut response = json_response(StatusCode::OK, &reservation);
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        ReserveOutcome::KeyReused => Err(ApiError::new(
            ProblemKind::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request body; use a new key for a new attempt",
        )),
        ReserveOutcome::ZoneNotAllowed(counters) => {
            let named: Vec<String> = counters.iter().map(|(r, s)| format!("{r}@{s}")).collect();
            let detail = match &request.zone {
                Some(zone) => format!("zone {zone} is not in the allow-list of: {}", named.join(", ")),
                None => {
                    format!("these counters take only listed zones, and the request names none: {}", named.join(", "))
                }
            };
            Err(ApiError::new(ProblemKind::ZoneNotAllowed, detail))
        }
        ReserveOutcome::Insufficient(shortages) => Err(ApiError::insufficient(shortages)),
    }
}

async fn read_reservation(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, b"")?;
    let (site, id) = site_and_id_from(path)?;
    match state.store.reservation(&site, &id).await? {
        Some(reservation) => Ok(json_response(StatusCode::OK, &reservation)),
        None => Err(unknown_reservation(&id)),
    }
}

async fn confirm(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, &body)?;
    let (site, id) = site_and_id_from(path)?;
    match state.store.confirm(&site, &id).await? {
        ConfirmOutcome::Confirmed(reservation) => Ok(json_response(StatusCode::OK, &reservation)),
        ConfirmOutcome::NotHeld(reservation) => Err(ApiError::new(
            ProblemKind::ReservationNotHeld,
            format!("reservation {id} is {}, not held", reservation.status.as_str()),
        )),
        ConfirmOutcome::NotFound => Err(unknown_reservation(&id)),
    }
}

async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Client, &body)?;
    let (site, id) = site_and_id_from(path)?;
    match state.store.cancel(&site, &id).await? {
        Some(reservation) => Ok(json_response(StatusCode::OK, &reservation)),
        None => Err(unknown_reservation(&id)),
    }
}

/// The site's placed and refused attempts per second over the last minute, as this process saw
/// them (admin only: refusals say how hard a site is contested).
async fn stats(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    Checked { state: &state, method: &method, uri: &uri, headers: &headers }.authorize(Need::Admin, b"")?;
    let site = site_from(path)?;
    no_query(&uri, "this endpoint")?;
    let now = now_seconds();
    let body = serde_json::json!({
        "site": site,
        "window_seconds": WINDOW_SECONDS,
        "now": now,
        "seconds": state.activity.seconds(&site, now),
    });
    Ok(json_response(StatusCode::OK, &body))
}

fn unknown_reservation(id: &ReservationId) -> ApiError {
    ApiError::new(ProblemKind::NotFound, format!("no reservation {id} at this site"))
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.ready().await?;
    Ok(Json(serde_json::json!({ "status": "ready" })).into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: OriginalUri) -> ApiError {
    ApiError::new(ProblemKind::NotFound, format!("no route for {}", uri.path()))
}
