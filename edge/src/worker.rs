//! The Workers runtime side: the fetch entry point, the Cache API, outbound fetches with
//! timeouts, signing. Everything it decides comes from `route` and `policy`.

use allot_shared::limits::BODY_BYTES_MAX;
use allot_shared::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use allot_shared::{
    Availability, AvailabilityQuery, IdempotencyKey, PROBLEM_CONTENT_TYPE, Problem, ProblemKind, ReservationRequest,
    SiteId,
};
use futures_util::future::{Either, select};
use worker::{
    AbortController, Cache, Context, Date, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response, event,
    js_sys, wasm_bindgen,
};

use crate::policy::{self, EdgeConfig};
use crate::route::{Route, route};

/// Seconds a client should wait after the edge's 503.
const RETRY_AFTER_SECONDS: &str = "1";
/// Where cached site views live in the Cache API (a URL no one can fetch).
const CACHE_ORIGIN: &str = "https://allot-edge-cache.invalid";
/// Site views one isolate keeps in memory (least recently fetched dropped first).
const MEMORY_VIEWS_MAX: usize = 1_024;

thread_local! {
    /// Live views this isolate got from the sites' Durable Objects, with when it got them.
    static LIVE_MEMO: std::cell::RefCell<std::collections::HashMap<SiteId, Memo>> =
        std::cell::RefCell::new(std::collections::HashMap::new());

    /// This isolate's views: the first place to look, with no I/O. The Cache API behind it is
    /// shared by the isolates of one location.
    static MEMORY_VIEWS: std::cell::RefCell<std::collections::HashMap<SiteId, (std::rc::Rc<Availability>, u64)>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Response headers passed from the coordinator to the client.
const PASSED_HEADERS: [&str; 5] = ["content-type", "etag", "location", "idempotent-replayed", "retry-after"];

/// What a handler fails with: a problem for the client, or a runtime error (logged, answered 500).
pub(crate) enum Failure {
    Problem(Problem),
    Runtime(worker::Error),
}

impl From<Problem> for Failure {
    fn from(problem: Problem) -> Self {
        Self::Problem(problem)
    }
}

impl From<worker::Error> for Failure {
    fn from(error: worker::Error) -> Self {
        Self::Runtime(error)
    }
}

type Outcome = Result<Response, Failure>;

#[event(fetch)]
pub async fn fetch(request: Request, env: Env, context: Context) -> worker::Result<Response> {
    match handle(request, &env, &context).await {
        Ok(response) => Ok(response),
        Err(Failure::Problem(problem)) => problem_response(&problem),
        Err(Failure::Runtime(error)) => {
            worker::console_error!("allot-edge: {error}");
            problem_response(&Problem::new(ProblemKind::Internal, "internal error at the edge"))
        }
    }
}

pub(crate) fn problem_response(problem: &Problem) -> worker::Result<Response> {
    let body = serde_json::to_vec(problem).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let mut response = Response::from_bytes(body)?.with_status(problem.status);
    let headers = response.headers_mut();
    headers.set("content-type", PROBLEM_CONTENT_TYPE)?;
    if matches!(problem.kind(), Some(ProblemKind::Unavailable | ProblemKind::RateLimited)) {
        headers.set("retry-after", RETRY_AFTER_SECONDS)?;
    }
    Ok(response)
}

pub(crate) fn now_ms() -> u64 {
    Date::now().as_millis()
}

pub(crate) fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string()).or_else(|| env.secret(name).ok().map(|v| v.to_string()))
}

async fn handle(mut request: Request, env: &Env, context: &Context) -> Outcome {
    let method = request.method().to_string();
    let url = request.url()?;
    let route = route(&method, url.path())?;
    let edge = Edge::from_env(env)?;
    match route {
        Route::BookingPage => page_response(crate::pages::BOOKING_HTML),
        Route::PageAsset(file) => page_response(file),
        Route::Healthz => Ok(Response::from_json(&serde_json::json!({ "status": "ok" }))?),
        Route::Availability(site) => {
            let query = AvailabilityQuery::parse(url.query())?;
            let if_none_match = request.headers().get("if-none-match")?;
            if let Some((live, age)) = memoized_live_view(env, &site, edge.config.view_memo_ms).await {
                return serve_view(&live.view, &query, if_none_match.as_deref(), age, "stream", Some(&live));
            }
            edge.availability(&site, &query, if_none_match.as_deref(), context).await
        }
        Route::AvailabilityStream(site) => {
            if url.query().is_some_and(|q| !q.is_empty()) {
                return Err(Problem::new(ProblemKind::MalformedRequest, "this stream takes no query").into());
            }
            Ok(site_view_stub(env, &site)?.fetch_with_str(&format!("https://site-view/stream/{site}")).await?)
        }
        Route::Reserve(site) => {
            let body = read_body(&mut request).await?;
            edge.reserve(&site, &request, body, context, env).await
        }
        Route::ReadReservation(site, id) => {
            let path = format!("/v1/sites/{site}/reservations/{id}");
            edge.relay(Method::Get, &path, None, None).await
        }
        Route::Confirm(site, id) => {
            let path = format!("/v1/sites/{site}/reservations/{id}/confirm");
            let outcome = edge.relay(Method::Post, &path, None, None).await;
            forget_view(&site, context);
            outcome
        }
        Route::Cancel(site, id) => {
            let path = format!("/v1/sites/{site}/reservations/{id}");
            let outcome = edge.relay(Method::Delete, &path, None, None).await;
            forget_view(&site, context);
            outcome
        }
    }
}

/// Reads a JSON request body within the contract's limit.
async fn read_body(request: &mut Request) -> Result<Vec<u8>, Failure> {
    let declared = request.headers().get("content-length")?.and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_BYTES_MAX) {
        return Err(too_large().into());
    }
    // Read chunk by chunk and stop past the limit: a body sent without Content-Length is never
    // held whole in the isolate's memory.
    let mut body = Vec::new();
    if request.inner().body().is_some() {
        let mut stream = request.stream()?;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            body.extend_from_slice(&chunk?);
            if body.len() > BODY_BYTES_MAX {
                return Err(too_large().into());
            }
        }
    }
    let is_json = request
        .headers()
        .get("content-type")?
        .and_then(|v| v.split(';').next().map(|t| t.trim().eq_ignore_ascii_case("application/json")))
        .unwrap_or(false);
    if !is_json {
        return Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            "send the body with Content-Type: application/json",
        )
        .into());
    }
    Ok(body)
}

fn too_large() -> Problem {
    Problem::new(ProblemKind::PayloadTooLarge, format!("the body is larger than {BODY_BYTES_MAX} bytes"))
}

/// A coordinator's answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    attempts: u32,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn into_response(self) -> Outcome {
        let mut response = Response::from_bytes(self.body)?.with_status(self.status);
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            headers.set(name, value)?;
        }
        headers.set("allot-coordinator-attempts", &self.attempts.to_string())?;
        Ok(response)
    }
}

#[derive(Clone)]
pub(crate) struct Edge {
    pub(crate) config: EdgeConfig,
    secret: String,
}

impl Edge {
    /// The edge's settings and secret from the Worker's environment.
    pub(crate) fn from_env(env: &Env) -> Result<Self, Failure> {
        let config = EdgeConfig::from_vars(|name| var(env, name)).map_err(|e| {
            worker::console_error!("allot-edge: configuration: {e}");
            Problem::new(ProblemKind::Internal, "the edge is misconfigured")
        })?;
        let secret = var(env, "ALLOT_EDGE_SECRET").filter(|s| !s.is_empty()).ok_or_else(|| {
            worker::console_error!("allot-edge: ALLOT_EDGE_SECRET is not set");
            Problem::new(ProblemKind::Internal, "the edge is misconfigured")
        })?;
        Ok(Self { config, secret })
    }

    /// A request to `coordinator`, signed with the edge secret.
    pub(crate) fn signed_request(
        &self,
        coordinator: &str,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        extra_headers: &[(&str, &str)],
    ) -> worker::Result<Request> {
        let timestamp = now_ms() / 1000;
        let headers = Headers::new();
        let signed = signature::sign(
            self.secret.as_bytes(),
            method.as_ref(),
            path_and_query,
            timestamp,
            body.unwrap_or_default(),
        );
        headers.set(TIMESTAMP_HEADER, &timestamp.to_string())?;
        headers.set(SIGNATURE_HEADER, &signed)?;
        if body.is_some() {
            headers.set("content-type", "application/json")?;
        }
        for (name, value) in extra_headers {
            headers.set(name, value)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        if let Some(body) = body {
            init.with_body(Some(js_sys::Uint8Array::from(body).into()));
        }
        Request::new_with_init(&format!("{coordinator}{path_and_query}"), &init)
    }

    /// Forwards a request, signed, retrying other coordinators while they are down.
    pub(crate) async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&[u8]>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        let started = now_ms();
        let start = (js_sys::Math::random() * self.config.coordinators.len() as f64) as usize;
        let mut last_failure = String::from("no attempt was made");
        for (attempt, coordinator) in (1u32..).zip(self.config.attempt_order(start)) {
            let elapsed = now_ms().saturating_sub(started);
            if elapsed >= self.config.forward_budget_ms {
                break;
            }
            let timeout_ms = self.config.attempt_timeout_ms.min(self.config.forward_budget_ms - elapsed);
            let extra: Vec<(&str, &str)> = idempotency_key.map(|key| ("idempotency-key", key)).into_iter().collect();
            let outbound = self.signed_request(coordinator, method.clone(), path_and_query, body, &extra)?;
            let controller = AbortController::default();
            let signal = controller.signal();
            let sent = Fetch::Request(outbound);
            let fetching = std::pin::pin!(sent.send_with_signal(&signal));
            let timer = std::pin::pin!(Delay::from(std::time::Duration::from_millis(timeout_ms)));
            let mut response = match select(fetching, timer).await {
                Either::Left((Ok(response), _)) => response,
                Either::Left((Err(error), _)) => {
                    last_failure = format!("{coordinator}: {error}");
                    continue;
                }
                Either::Right(((), _)) => {
                    controller.abort();
                    last_failure = format!("{coordinator}: no answer within {timeout_ms} ms");
                    continue;
                }
            };
            let status = response.status_code();
            if policy::is_retryable_status(status) {
                last_failure = format!("{coordinator}: answered {status}");
                continue;
            }
            let headers = PASSED_HEADERS
                .iter()
                .filter_map(|name| response.headers().get(name).ok().flatten().map(|v| ((*name).to_owned(), v)))
                .collect();
            let body = match response.bytes().await {
                Ok(body) => body,
                Err(error) => {
                    // The answer was lost mid-body: the next attempt (same key) finds out.
                    last_failure = format!("{coordinator}: reading the answer failed: {error}");
                    continue;
                }
            };
            if status == 401 || status == 403 {
                worker::console_error!("allot-edge: {coordinator} refused the edge's signature ({status})");
                return Err(Problem::new(ProblemKind::Unavailable, "the edge cannot reach a coordinator").into());
            }
            return Ok(Answer { status, headers, body, attempts: attempt });
        }
        worker::console_warn!("allot-edge: forwarding {path_and_query} failed: {last_failure}");
        Err(Problem::new(ProblemKind::Unavailable, "no coordinator answered; retry after the Retry-After delay").into())
    }

    /// Forwards and answers the coordinator's response as it is.
    async fn relay(&self, method: Method, path: &str, body: Option<&[u8]>, key: Option<&str>) -> Outcome {
        self.forward(method, path, body, key).await?.into_response()
    }

    async fn availability(
        &self,
        site: &SiteId,
        query: &AvailabilityQuery,
        if_none_match: Option<&str>,
        context: &Context,
    ) -> Outcome {
        let now = now_ms();
        let (view, age, source) = match cached_view(site, self.config.cache_ttl_ms).await {
            Some((view, fetched_at)) if policy::age_ms(fetched_at, now) < self.config.cache_ttl_ms => {
                (view, policy::age_ms(fetched_at, now), "cache")
            }
            _ => {
                let answer = self.forward(Method::Get, &format!("/v1/sites/{site}/availability"), None, None).await?;
                if answer.status != 200 {
                    return answer.into_response();
                }
                let view: std::rc::Rc<Availability> = std::rc::Rc::new(
                    serde_json::from_slice(&answer.body)
                        .map_err(|e| worker::Error::RustError(format!("coordinator availability: {e}")))?,
                );
                remember(site, std::rc::Rc::clone(&view), now);
                let (site, ttl_ms, body) = (site.clone(), self.config.cache_ttl_ms, answer.body);
                context.wait_until(async move { store_view(&site, &body, now, ttl_ms).await });
                (view, 0, "coordinator")
            }
        };
        serve_view(&view, query, if_none_match, age, source, None)
    }

    /// Fetches the site's full view from a coordinator into the cache.
    async fn refresh_view(&self, site: &SiteId) {
        let now = now_ms();
        if let Some((_, fetched_at)) = memory_view(site)
            && policy::age_ms(fetched_at, now) < self.config.shield_age_ms / 2
        {
            return; // refreshed just now
        }
        let path = format!("/v1/sites/{site}/availability");
        if let Ok(answer) = self.forward(Method::Get, &path, None, None).await
            && answer.status == 200
            && let Ok(view) = serde_json::from_slice::<Availability>(&answer.body)
        {
            remember(site, std::rc::Rc::new(view), now);
            store_view(site, &answer.body, now, self.config.cache_ttl_ms).await;
        }
    }

    async fn reserve(&self, site: &SiteId, request: &Request, body: Vec<u8>, context: &Context, env: &Env) -> Outcome {
        // The same order of checks as the coordinator, so both refuse alike.
        let client_key = match request.headers().get("idempotency-key")? {
            None => None,
            Some(value) => Some(IdempotencyKey::parse(&value).map_err(|_| {
                Problem::new(
                    ProblemKind::MalformedRequest,
                    "Idempotency-Key must be 1..=255 printable ASCII characters",
                )
            })?),
        };
        let checked = ReservationRequest::parse(&body)?;
        // The live view first (pushed by the event stream: a counter_full reaches it at once);
        // if its stream is down, this isolate's short-lived memory view; never the Cache API.
        // A request with the client's own key is always forwarded: the coordinator looks the
        // key up before anything else, so a replay never depends on capacity.
        let shortages = if self.config.shield_age_ms == 0 || client_key.is_some() {
            None
        } else {
            match live_shortages(env, site, &body).await {
                Some(shortages) => Some(shortages).filter(|s| !s.is_empty()),
                None => memory_view(site).and_then(|(view, fetched_at)| {
                    policy::shielded_shortages(
                        &view,
                        policy::age_ms(fetched_at, now_ms()),
                        self.config.shield_age_ms,
                        &checked,
                    )
                }),
            }
        };
        if let Some(shortages) = shortages {
            let mut response = problem_response(&Problem::insufficient(shortages))?;
            response.headers_mut().set("allot-shielded", "true")?;
            return Ok(response);
        }
        // Every forwarded attempt carries a key, so a retry on another coordinator finds the
        // reservation a lost answer was about instead of making a second one.
        let generated = client_key.is_none();
        let key = match client_key {
            Some(key) => key.as_str().to_owned(),
            None => format!("edge-{}", random_uuid()?),
        };
        let path = format!("/v1/sites/{site}/reservations");
        let mut answer = self.forward(Method::Post, &path, Some(&body), Some(&key)).await?;
        if generated && answer.status == 200 && answer.header("idempotent-replayed") == Some("true") {
            // Our own key replayed: an earlier attempt of this very request made it. To the client
            // this is the creation it asked for.
            answer.status = 201;
            answer.headers.retain(|(name, _)| name != "idempotent-replayed");
        }
        if answer.status == 201 {
            forget_view(site, context);
        } else if answer.status == 409 && self.config.shield_age_ms > 0 {
            // Refused for capacity: load the site's view after answering, so that the attempts
            // that follow in a flash crowd are refused here while it is young.
            let (edge, site) = (self.clone(), site.clone());
            context.wait_until(async move { edge.refresh_view(&site).await });
        }
        answer.into_response()
    }
}

/// Answers an availability request from a view.
/// One of the booking page's embedded files, with headers that keep it to its own origin.
fn page_response(file: crate::pages::PageFile) -> Outcome {
    let mut response = Response::ok(file.body)?;
    let headers = response.headers_mut();
    headers.set("content-type", file.content_type)?;
    headers.set("content-security-policy", crate::pages::CONTENT_SECURITY_POLICY)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("cache-control", "no-cache")?;
    Ok(response)
}

fn serve_view(
    view: &Availability,
    query: &AvailabilityQuery,
    if_none_match: Option<&str>,
    age_ms: u64,
    source: &str,
    live: Option<&LiveView>,
) -> Outcome {
    let etag = format!("\"{}\"", view.version);
    let mut response = if policy::etag_matches(if_none_match, &etag) {
        Response::empty()?.with_status(304)
    } else {
        Response::from_json(&policy::filtered(view, query))?
    };
    let headers = response.headers_mut();
    headers.set("etag", &etag)?;
    headers.set("cache-control", "no-cache")?;
    headers.set("age", &(age_ms / 1000).to_string())?;
    headers.set("allot-stale-ms", &age_ms.to_string())?;
    headers.set("allot-source", source)?;
    headers.set("allot-version", &view.version.to_string())?;
    match live {
        Some(live) => {
            headers.set("allot-stream", &live.stream)?;
            headers.set("allot-lag-ms", &live.lag_ms)?;
            headers.set("allot-snapshots", &live.snapshots)?;
        }
        None => headers.set("allot-stream", "down")?,
    }
    Ok(response)
}

/// The Durable Object that holds `site`'s live view in this edge's region.
fn site_view_stub(env: &Env, site: &SiteId) -> worker::Result<worker::Stub> {
    let region = var(env, "ALLOT_REGION").filter(|r| !r.is_empty()).unwrap_or_else(|| "local".to_owned());
    let name = format!("{site}@{region}");
    let namespace = env.durable_object("SITE_VIEWS")?;
    match var(env, "ALLOT_LOCATION_HINT").filter(|h| !h.is_empty()) {
        Some(hint) => namespace.get_by_name_with_location_hint(&name, &hint),
        None => namespace.get_by_name(&name),
    }
}

/// A site's view as its Durable Object holds it while its event stream is up.
struct LiveView {
    view: Availability,
    stream: String,
    lag_ms: String,
    snapshots: String,
}

/// A live view this isolate got from a Durable Object.
struct Memo {
    live: std::rc::Rc<LiveView>,
    got_at_ms: u64,
    /// A request is asking the object for a newer one right now.
    refreshing: bool,
}

/// While one request refreshes a memo, others may serve it up to this old rather than all
/// asking the single-threaded object at once.
const MEMO_STALE_WHILE_REFRESHING_MS: u64 = 250;

/// The live view, reused for `memo_ms` within this isolate (one refresh at a time); with its
/// age in ms.
async fn memoized_live_view(env: &Env, site: &SiteId, memo_ms: u64) -> Option<(std::rc::Rc<LiveView>, u64)> {
    let now = now_ms();
    let reuse = LIVE_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        let entry = memo.get_mut(site)?;
        let age = policy::age_ms(entry.got_at_ms, now);
        if age < memo_ms || (entry.refreshing && age < MEMO_STALE_WHILE_REFRESHING_MS.max(memo_ms)) {
            return Some((std::rc::Rc::clone(&entry.live), age));
        }
        entry.refreshing = true;
        None
    });
    if reuse.is_some() {
        return reuse;
    }
    let fetched = live_view(env, site).await.map(std::rc::Rc::new);
    LIVE_MEMO.with(|memo| {
        let mut memo = memo.borrow_mut();
        match &fetched {
            Some(live) if memo_ms > 0 => {
                if memo.len() >= MEMORY_VIEWS_MAX && !memo.contains_key(site) {
                    memo.clear();
                }
                // Two refreshes may race: keep the newer view, so versions never go backwards.
                let older = memo.get(site).is_some_and(|held| held.live.view.version > live.view.version);
                if older {
                    if let Some(held) = memo.get_mut(site) {
                        held.refreshing = false;
                    }
                } else {
                    let entry = Memo { live: std::rc::Rc::clone(live), got_at_ms: now_ms(), refreshing: false };
                    memo.insert(site.clone(), entry);
                }
            }
            _ => {
                memo.remove(site);
            }
        }
    });
    fetched.map(|live| (live, 0))
}

/// The live view, or `None` if the object's stream has been down too long (or it fails).
async fn live_view(env: &Env, site: &SiteId) -> Option<LiveView> {
    let mut response =
        site_view_stub(env, site).ok()?.fetch_with_str(&format!("https://site-view/view/{site}")).await.ok()?;
    if response.status_code() != 200 {
        return None;
    }
    let stream = response.headers().get("allot-stream").ok().flatten().unwrap_or_default();
    let lag_ms = response.headers().get("allot-lag-ms").ok().flatten().unwrap_or_default();
    let snapshots = response.headers().get("allot-snapshots").ok().flatten().unwrap_or_default();
    let view = response.json().await.ok()?;
    Some(LiveView { view, stream, lag_ms, snapshots })
}

/// Asks the site's live view whether a reservation is sold out: `Some(shortages)` to refuse,
/// `Some(empty)` never; `None` when the live view cannot say (stream down).
async fn live_shortages(env: &Env, site: &SiteId, body: &[u8]) -> Option<Vec<allot_shared::Shortage>> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(js_sys::Uint8Array::from(body).into()));
    let request = Request::new_with_init(&format!("https://site-view/shield/{site}"), &init).ok()?;
    let mut response = site_view_stub(env, site).ok()?.fetch_with_request(request).await.ok()?;
    match response.status_code() {
        200 => response.json().await.ok(),
        204 => Some(Vec::new()),
        _ => None,
    }
}

fn random_uuid() -> Result<String, Failure> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into()).map_err(js_error)?;
    let random_uuid: js_sys::Function =
        wasm_bindgen::JsCast::dyn_into(js_sys::Reflect::get(&crypto, &"randomUUID".into()).map_err(js_error)?)
            .map_err(js_error)?;
    random_uuid
        .call0(&crypto)
        .map_err(js_error)?
        .as_string()
        .ok_or_else(|| Failure::Runtime(worker::Error::RustError("randomUUID returned no string".into())))
}

fn js_error(value: wasm_bindgen::JsValue) -> Failure {
    Failure::Runtime(worker::Error::from(value))
}

fn cache_key(site: &SiteId) -> String {
    format!("{CACHE_ORIGIN}/v1/sites/{site}/availability")
}

fn remember(site: &SiteId, view: std::rc::Rc<Availability>, fetched_at_ms: u64) {
    MEMORY_VIEWS.with(|views| {
        let mut views = views.borrow_mut();
        if views.len() >= MEMORY_VIEWS_MAX && !views.contains_key(site) {
            let oldest = views.iter().min_by_key(|(_, (_, at))| *at).map(|(s, _)| s.clone());
            if let Some(oldest) = oldest {
                views.remove(&oldest);
            }
        }
        views.insert(site.clone(), (view, fetched_at_ms));
    });
}

/// The site's view from this isolate's memory, with when it was fetched.
fn memory_view(site: &SiteId) -> Option<(std::rc::Rc<Availability>, u64)> {
    MEMORY_VIEWS.with(|views| views.borrow().get(site).cloned())
}

/// The site's view: from memory, else from the Cache API (then kept in memory).
async fn cached_view(site: &SiteId, fresh_within_ms: u64) -> Option<(std::rc::Rc<Availability>, u64)> {
    let now = now_ms();
    if let Some((view, fetched_at)) = memory_view(site)
        && policy::age_ms(fetched_at, now) < fresh_within_ms
    {
        return Some((view, fetched_at));
    }
    let mut response = Cache::default().get(cache_key(site), false).await.ok()??;
    let fetched_at = response.headers().get("allot-fetched-at-ms").ok()??.parse().ok()?;
    let view: std::rc::Rc<Availability> = std::rc::Rc::new(serde_json::from_slice(&response.bytes().await.ok()?).ok()?);
    remember(site, std::rc::Rc::clone(&view), fetched_at);
    Some((view, fetched_at))
}

async fn store_view(site: &SiteId, body: &[u8], fetched_at_ms: u64, ttl_ms: u64) {
    let stored = async {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set("cache-control", &format!("max-age={}", ttl_ms.div_ceil(1000).max(1)))?;
        headers.set("allot-fetched-at-ms", &fetched_at_ms.to_string())?;
        let response = Response::from_bytes(body.to_vec())?.with_headers(headers);
        Cache::default().put(cache_key(site), response).await
    };
    if let Err(error) = stored.await {
        worker::console_warn!("allot-edge: caching availability of {site}: {error}");
    }
}

/// Drops the cached view after a change made through this edge, so the next read is fresh:
/// from memory now, from the Cache API after the response is sent.
fn forget_view(site: &SiteId, context: &Context) {
    MEMORY_VIEWS.with(|views| views.borrow_mut().remove(site));
    let key = cache_key(site);
    context.wait_until(async move {
        let _ = Cache::default().delete(key, false).await;
    });
}
