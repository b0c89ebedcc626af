//! `SiteView`, a Durable Object per (site, region): it holds the site's availability view and
//! keeps it current from the coordinator's event stream, so the edge serves availability and
//! refuses sold-out counters without a coordinator call per request.
//!
//! The view is loaded from a snapshot (`GET .../availability`, whose `version` is a stream id)
//! and then moved forward only by events newer than its version, in stream order. After any
//! break it resumes with `Last-Event-ID` = its version; after a `resync` (trimmed or lagged) or
//! an unreadable event it reloads the snapshot. It is never older than its stated version. An
//! alarm every `KEEPALIVE_MS` keeps the object (and its subscription) alive while requests come.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use allot_shared::{Availability, ReservationRequest, SiteId};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use worker::{Delay, Env, Fetch, Method, Request, Response, State, durable_object};

use crate::policy;
use crate::view::{self, Applied, SseParser};
use crate::worker::{Edge, now_ms};

/// Alarm period that keeps an object with recent requests alive (idle objects are evicted).
const KEEPALIVE_MS: u64 = 20_000;
/// An object with no request for this long lets its subscription go.
const IDLE_MS: u64 = 300_000;
/// With no byte from the coordinator for this long (heartbeats come every 15 s), the stream is
/// taken as broken and reopened.
const STREAM_SILENCE_MS: u64 = 20_000;
/// First wait before reconnecting; doubles up to the maximum.
const RECONNECT_DELAY_MIN_MS: u64 = 100;
/// Longest wait between reconnection attempts.
const RECONNECT_DELAY_MAX_MS: u64 = 2_000;
/// Browsers one object streams to at most.
const BROWSERS_MAX: usize = 10_000;
/// Events queued for one browser before it is dropped as too slow.
const BROWSER_QUEUE_EVENTS: usize = 64;

type BrowserSender = futures_channel::mpsc::Sender<Result<Vec<u8>, worker::Error>>;

#[derive(Default)]
struct Live {
    /// How long the view stays servable after its stream broke (`ALLOT_STREAM_DOWN_MS`).
    stream_down_ms: u64,
    /// Bumped each time a subscription task starts; an older task stops when it sees a newer one.
    generation: u64,
    site: Option<SiteId>,
    view: Option<Availability>,
    connected: bool,
    down_since_ms: Option<u64>,
    running: bool,
    last_request_ms: u64,
    reload: bool,
    snapshots_loaded: u64,
    events_applied: u64,
    browsers: Vec<BrowserSender>,
}

impl Live {
    /// The view if it may be served: streaming, or broken for less than the bound.
    fn servable(&self, now: u64) -> Option<&Availability> {
        let fresh = policy::live_view_servable(self.connected, self.down_since_ms, now, self.stream_down_ms);
        if fresh { self.view.as_ref() } else { None }
    }

    fn broadcast(&mut self, text: &str) {
        let bytes = text.as_bytes().to_vec();
        self.browsers.retain_mut(|browser| browser.try_send(Ok(bytes.clone())).is_ok());
    }
}

/// The Durable Object.
#[durable_object(alarm)]
pub struct SiteView {
    state: State,
    env: Env,
    live: Rc<RefCell<Live>>,
}

impl std::fmt::Debug for SiteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteView").field("site", &self.live.borrow().site).finish_non_exhaustive()
    }
}

impl worker::DurableObject for SiteView {
    fn new(state: State, env: Env) -> Self {
        let stream_down_ms =
            Edge::from_env(&env).map_or(policy::STREAM_DOWN_MS_DEFAULT, |edge| edge.config.stream_down_ms);
        Self { state, env, live: Rc::new(RefCell::new(Live { stream_down_ms, ..Live::default() })) }
    }

    async fn fetch(&self, request: Request) -> worker::Result<Response> {
        let url = request.url()?;
        let mut parts = url.path().trim_start_matches('/').splitn(2, '/');
        let (action, site) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let Ok(site) = SiteId::parse(site) else { return Response::error("bad site", 400) };
        let now = now_ms();
        {
            let mut live = self.live.borrow_mut();
            live.site.get_or_insert_with(|| site.clone());
            live.last_request_ms = now;
        }
        self.ensure_running().await;
        match action {
            "view" => {
                let live = self.live.borrow();
                match live.servable(now) {
                    Some(view) => {
                        let mut response = Response::from_json(view)?;
                        let lag = live.down_since_ms.map_or(0, |since| now.saturating_sub(since));
                        response
                            .headers_mut()
                            .set("allot-stream", if live.connected { "live" } else { "recovering" })?;
                        response.headers_mut().set("allot-lag-ms", &lag.to_string())?;
                        response.headers_mut().set("allot-snapshots", &live.snapshots_loaded.to_string())?;
                        Ok(response)
                    }
                    None => Response::error("stream down", 503),
                }
            }
            "shield" => {
                let mut request = request;
                let body = request.bytes().await?;
                let Ok(checked) = ReservationRequest::parse(&body) else { return Response::error("bad body", 400) };
                let live = self.live.borrow();
                let Some(view) = live.servable(now) else { return Response::error("stream down", 503) };
                match policy::shielded_shortages(view, 0, 1, &checked) {
                    Some(shortages) => Response::from_json(&shortages),
                    None => Ok(Response::empty()?.with_status(204)),
                }
            }
            "stream" => {
                let (sender, receiver) = futures_channel::mpsc::channel(BROWSER_QUEUE_EVENTS);
                let mut live = self.live.borrow_mut();
                live.browsers.retain(|browser| !browser.is_closed());
                if live.browsers.len() >= BROWSERS_MAX {
                    let problem = allot_shared::Problem::new(
                        allot_shared::ProblemKind::Unavailable,
                        format!("this edge streams one site to at most {BROWSERS_MAX} listeners"),
                    );
                    return crate::worker::problem_response(&problem);
                }
                let mut sender = sender;
                // The view as it stands (even while its stream recovers: its version says how
                // current it is); later events are applied on top of it in order.
                if let Some(view) = live.view.as_ref() {
                    let _ = sender.try_send(Ok(view::snapshot_event(view).into_bytes()));
                }
                live.browsers.push(sender);
                let mut response = Response::from_stream(receiver)?;
                response.headers_mut().set("content-type", "text/event-stream")?;
                response.headers_mut().set("cache-control", "no-cache")?;
                Ok(response)
            }
            _ => Response::error("not found", 404),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let idle = {
            let mut live = self.live.borrow_mut();
            live.browsers.retain(|browser| !browser.is_closed());
            now_ms().saturating_sub(live.last_request_ms) > IDLE_MS && live.browsers.is_empty()
        };
        if idle {
            self.live.borrow_mut().running = false; // the subscription ends at its next wake-up
        } else {
            self.ensure_running().await;
            self.state.storage().set_alarm(Duration::from_millis(KEEPALIVE_MS)).await?;
        }
        Response::ok("")
    }
}

impl SiteView {
    async fn ensure_running(&self) {
        let (site, generation) = {
            let mut live = self.live.borrow_mut();
            if live.running {
                return;
            }
            let Some(site) = live.site.clone() else { return };
            live.running = true;
            live.generation += 1;
            (site, live.generation)
        };
        // The alarm chain keeps the object (and so its subscription) alive while it is wanted.
        let _ = self.state.storage().set_alarm(Duration::from_millis(KEEPALIVE_MS)).await;
        let (live, env) = (Rc::clone(&self.live), self.env.clone());
        wasm_bindgen_futures::spawn_local(async move { subscribe(live, env, site, generation).await });
    }
}

async fn sleep_ms(ms: u64) {
    Delay::from(Duration::from_millis(ms)).await;
}

/// Loads the site's snapshot from a coordinator.
async fn load_snapshot(edge: &Edge, site: &SiteId) -> Option<Availability> {
    let answer = edge.forward(Method::Get, &format!("/v1/sites/{site}/availability"), None, None).await.ok()?;
    if answer.status != 200 {
        return None;
    }
    serde_json::from_slice(&answer.body).ok()
}

/// Keeps the view current until the object lets it go.
async fn subscribe(live: Rc<RefCell<Live>>, env: Env, site: SiteId, generation: u64) {
    let current = |live: &Rc<RefCell<Live>>| {
        let l = live.borrow();
        l.running && l.generation == generation
    };
    let Ok(edge) = Edge::from_env(&env) else {
        live.borrow_mut().running = false;
        return;
    };
    let mut delay_ms = RECONNECT_DELAY_MIN_MS;
    let mut attempt: usize = 0;
    while current(&live) {
        let needs_snapshot = {
            let l = live.borrow();
            l.view.is_none() || l.reload
        };
        if needs_snapshot {
            match load_snapshot(&edge, &site).await {
                Some(snapshot) => {
                    let mut l = live.borrow_mut();
                    let text = view::snapshot_event(&snapshot);
                    l.view = Some(snapshot);
                    l.reload = false;
                    l.snapshots_loaded += 1;
                    l.broadcast(&text);
                }
                None => {
                    sleep_ms(delay_ms).await;
                    delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MAX_MS);
                    continue;
                }
            }
        }
        let version = live.borrow().view.as_ref().map(|v| v.version.to_string()).unwrap_or_default();
        let coordinator = edge.config.coordinators[attempt % edge.config.coordinators.len()].clone();
        attempt = attempt.wrapping_add(1);
        let path = format!("/v1/sites/{site}/events");
        let opened = match edge.signed_request(&coordinator, Method::Get, &path, None, &[("last-event-id", &version)]) {
            Ok(request) => {
                let fetch = Fetch::Request(request);
                let sending = std::pin::pin!(fetch.send());
                let timer = std::pin::pin!(sleep_ms(edge.config.attempt_timeout_ms));
                match select(sending, timer).await {
                    Either::Left((Ok(response), _)) if response.status_code() == 200 => Some(response),
                    _ => None, // failed, refused, or no answer in time: try again (next coordinator)
                }
            }
            Err(_) => None,
        };
        if let Some(mut response) = opened
            && let Ok(mut stream) = response.stream()
        {
            {
                let mut l = live.borrow_mut();
                l.connected = true;
                l.down_since_ms = None;
            }
            delay_ms = RECONNECT_DELAY_MIN_MS;
            let mut parser = SseParser::default();
            'read: loop {
                if !current(&live) {
                    break;
                }
                let next = std::pin::pin!(stream.next());
                let silence = std::pin::pin!(sleep_ms(STREAM_SILENCE_MS));
                let chunk = match select(next, silence).await {
                    Either::Left((Some(Ok(chunk)), _)) => chunk,
                    _ => break, // ended, failed, or silent too long
                };
                let Ok(events) = parser.feed(&String::from_utf8_lossy(&chunk)) else { break };
                let mut l = live.borrow_mut();
                for event in events {
                    if event.event == "resync" {
                        l.reload = true;
                        break 'read;
                    }
                    let Some(id) = event.id.as_deref() else { continue };
                    let Some(current) = l.view.as_mut() else { break 'read };
                    match view::apply(current, id, &event.event, &event.data) {
                        Applied::Changed(counters) => {
                            l.events_applied += 1;
                            let text = view::availability_event(site.as_str(), id, &counters);
                            l.broadcast(&text);
                        }
                        Applied::AlreadySeen => {}
                        Applied::Unreadable => {
                            l.reload = true;
                            break 'read;
                        }
                    }
                }
            }
        }
        {
            let mut l = live.borrow_mut();
            if l.connected {
                l.connected = false;
                l.down_since_ms = Some(now_ms());
            } else if l.down_since_ms.is_none() {
                l.down_since_ms = Some(now_ms());
            }
        }
        sleep_ms(delay_ms).await;
        delay_ms = (delay_ms * 2).min(RECONNECT_DELAY_MAX_MS);
    }
    let mut l = live.borrow_mut();
    if l.generation == generation {
        l.connected = false;
        l.running = false;
    }
}
