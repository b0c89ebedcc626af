// Allot operations dashboard: one ES module (strict by definition), no dependencies, no build.
//
// The page runs under a strict CSP, so all markup is built with createElement / textContent
// (never innerHTML: event data comes from clients) and styling goes through classes, data
// attributes and CSSOM custom properties only.
//
// Named limits:
//   FEED_ITEMS_MAX      = 200      feed entries kept and shown; older ones are dropped
//   HISTORY_POINTS_MAX  = 2000     history points kept per counter; oldest dropped
//   RECONNECT_MS        = 1000     wait before reopening an ended, failed or resynced stream
//   STATS_POLL_MS       = 1000     stats polling period while connected
//   RATE_BARS           = 60       bars in the rates chart (the server's stats window)
//   ALMOST_FULL_RATIO   = 0.9      used / capacity at which a counter is "almost full"
//   FEATURED_RATIO      = 0.9      total used / capacity at which a resource is "featured"
//   FEED_COUNTERS_SHOWN = 4        counters listed per feed item (capacity_changed may carry 10,000)
//   ALERTS_MAX          = 100      alert lines listed; the rest are counted
//   ALERT_HIGHLIGHT_MAX = 5        newest counter_full / counter_almost_full feed items highlighted
//   CONFIRM_LINES_MAX   = 50       old → new lines listed in the confirm dialog
//   PUT_COUNTERS_MAX    = 10000    counters per capacity PUT (server limit)
//   CAPACITY_MAX        = 1e9      largest capacity the server accepts
//   HISTORY_COUNTERS_MAX = 2000    counters with a kept history; the least recently changed go
//   STREAM_SILENCE_MS   = 30000    no byte for this long (heartbeats come every 15 s): reconnect

const FEED_ITEMS_MAX = 200;
const HISTORY_POINTS_MAX = 2000;
const RECONNECT_MS = 1000;
const STATS_POLL_MS = 1000;
const RATE_BARS = 60;
const ALMOST_FULL_RATIO = 0.9;
const FEATURED_RATIO = 0.9;
const FEED_COUNTERS_SHOWN = 4;
const ALERTS_MAX = 100;
const ALERT_HIGHLIGHT_MAX = 5;
const CONFIRM_LINES_MAX = 50;
const PUT_COUNTERS_MAX = 10000;
const CAPACITY_MAX = 1_000_000_000;
const HISTORY_COUNTERS_MAX = 2000;
const STREAM_SILENCE_MS = 30_000;

const TOKEN_KEY = 'allot.token';
const SITE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const DATED_SLOT = /^(\d{4}-\d{2}-\d{2})T(.+)$/;
const SVG_NS = 'http://www.w3.org/2000/svg';
const ALERT_TYPES = new Set(['counter_full', 'counter_almost_full']);
const TYPE_WORDS = {
  capacity_changed: 'Capacity changed',
  reservation_placed: 'Reservation placed',
  reservation_confirmed: 'Reservation confirmed',
  reservation_cancelled: 'Reservation cancelled',
  reservation_expired: 'Reservation expired',
  counter_full: 'Counter full',
  counter_reopened: 'Counter reopened',
  counter_almost_full: 'Counter almost full',
};

// ---------------------------------------------------------------------------------------------
// State. The model is updated by network code; the DOM is redrawn once per animation frame,
// so replaying tens of thousands of retained events does not redraw once per event.

const state = {
  counters: new Map(), // key → { resource, slot, capacity, used, zones }
  history: new Map(), // key → [{ at, used, capacity }], oldest first
  feed: [], // newest first
  stats: null,
  selected: null, // key of the selected counter
  saving: false,
};

const dirty = { structure: true, keys: new Set(), counters: true, feed: true, history: true, rates: true };
const view = { cells: new Map(), resources: new Map(), alertsSignature: '' };
let session = null; // { token, site, controller, lastId, snapshotLoaded, statsError }
let pendingChange = null;
let renderQueued = false;

const $ = (id) => document.getElementById(id);

class ProblemError extends Error {
  constructor(problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.problem = problem;
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function el(tag, { className, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

const counterKey = (resource, slot) => `${resource}|${slot}`; // '|' never appears in ids or slots
const remainingOf = (c) => Math.max(0, c.capacity - c.used);
const compareText = (a, b) => (a < b ? -1 : a > b ? 1 : 0); // byte order, as the server sorts
const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Milliseconds of a Redis stream id `<unix-ms>-<seq>` (when the event happened). */
/** Whether stream id `a` (`<ms>-<seq>`) comes after `b`. */
function idAfter(a, b) {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am > bm || (am === bm && as > bs);
}

function idMs(id) {
  if (!id) return Number.NaN;
  const ms = Number(String(id).split('-')[0]);
  // Beyond ±8.64e15 ms a Date is invalid (and toISOString would throw while rendering).
  return Number.isSafeInteger(ms) && Math.abs(ms) <= 8.64e15 ? ms : Number.NaN;
}

function clock(ms, withMillis = true) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, '0');
  const base = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  return withMillis ? `${base}.${String(d.getMilliseconds()).padStart(3, '0')}` : base;
}

function counterState(c) {
  if (c.used > c.capacity) return 'deficit';
  if (c.used >= c.capacity) return 'full';
  if (c.used >= ALMOST_FULL_RATIO * c.capacity) return 'almost-full';
  return 'open';
}

function fillRatio(c) {
  return c.capacity > 0 ? Math.min(1, c.used / c.capacity) : 1;
}

function counterNote(c, kind = counterState(c)) {
  if (kind === 'deficit') return `deficit ${c.used - c.capacity}`;
  if (kind === 'full') return 'full';
  if (kind === 'almost-full') return `almost full, ${remainingOf(c)} left`;
  return `${remainingOf(c)} left`;
}

function counterLabel(c) {
  const kind = counterState(c);
  const base = `${c.resource} ${c.slot}: ${c.used} of ${c.capacity} used`;
  if (kind === 'deficit') return `${base}, deficit ${c.used - c.capacity}`;
  if (kind === 'full') return `${base}, full`;
  return `${base}, ${remainingOf(c)} left${kind === 'almost-full' ? ', almost full' : ''}`;
}

function sortedCounters() {
  return [...state.counters.values()].sort(
    (a, b) => compareText(a.resource, b.resource) || compareText(a.slot, b.slot),
  );
}

function isCount(value) {
  return Number.isSafeInteger(value) && value >= 0;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    // Remove the abort listener on timeout so a long session does not pile up listeners.
    const onAbort = () => { clearTimeout(timer); resolve(); };
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** aria-invalid="" would mean "false", so set or remove the attribute explicitly. */
function setInvalid(input, invalid) {
  if (invalid) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function setStatus(text, kind = 'info') {
  const status = $('status');
  status.textContent = text;
  status.dataset.kind = kind;
}

// ---------------------------------------------------------------------------------------------
// Model updates

/**
 * Applies counters as they stand after a change. `replaceZones`: the source states the full
 * zone list (snapshot, PUT answer, capacity_changed), so an absent list means "no restriction";
 * other events never carry zones, so the known list is kept.
 */
function applyCounters(list, { replaceZones, at, historyOnly = false }) {
  if (!Array.isArray(list)) return;
  for (const raw of list) {
    if (typeof raw?.resource !== 'string' || typeof raw.slot !== 'string') continue;
    if (!isCount(raw.capacity) || !isCount(raw.used)) continue;
    const key = counterKey(raw.resource, raw.slot);
    if (historyOnly) {
      if (Number.isFinite(at)) recordHistory(key, at, { used: raw.used, capacity: raw.capacity });
      continue;
    }
    let counter = state.counters.get(key);
    if (!counter) {
      counter = { resource: raw.resource, slot: raw.slot, capacity: 0, used: 0, zones: null };
      state.counters.set(key, counter);
      dirty.structure = true;
    }
    counter.capacity = raw.capacity;
    counter.used = raw.used;
    const zones = Array.isArray(raw.zones) && raw.zones.length > 0 ? [...raw.zones] : null;
    if (replaceZones || zones) counter.zones = zones;
    dirty.keys.add(key);
    if (Number.isFinite(at)) recordHistory(key, at, counter);
  }
  dirty.counters = true;
  dirty.history = true;
  scheduleRender();
}

/** Capacities and zones from a capacity PUT's answer, leaving `used` to the stream. */
function applyCapacities(list) {
  if (!Array.isArray(list)) return;
  for (const raw of list) {
    if (typeof raw?.resource !== 'string' || typeof raw.slot !== 'string' || !isCount(raw.capacity)) continue;
    const counter = state.counters.get(counterKey(raw.resource, raw.slot));
    if (!counter) continue;
    counter.capacity = raw.capacity;
    counter.zones = Array.isArray(raw.zones) && raw.zones.length > 0 ? [...raw.zones] : null;
    dirty.keys.add(counterKey(raw.resource, raw.slot));
  }
  dirty.counters = true;
  scheduleRender();
}

function recordHistory(key, at, counter) {
  let points = state.history.get(key);
  if (points) {
    // Map order is recency: the least recently changed counter is first, and goes first.
    state.history.delete(key);
  } else {
    points = [];
    if (state.history.size >= HISTORY_COUNTERS_MAX) state.history.delete(state.history.keys().next().value);
  }
  state.history.set(key, points);
  const last = points.at(-1);
  // Several events can carry the same values (e.g. reservation_placed then counter_full): only
  // real changes become points, so "N changes" means something.
  if (last && last.used === counter.used && last.capacity === counter.capacity) return;
  points.push({ at, used: counter.used, capacity: counter.capacity });
  if (points.length > HISTORY_POINTS_MAX) points.splice(0, points.length - HISTORY_POINTS_MAX);
}

function pushFeed(item) {
  state.feed.unshift(item);
  if (state.feed.length > FEED_ITEMS_MAX) state.feed.length = FEED_ITEMS_MAX;
  dirty.feed = true;
  scheduleRender();
}

function resetSiteState() {
  state.counters.clear();
  state.history.clear();
  state.feed = [];
  Object.assign(dirty, { structure: true, counters: true, feed: true, history: true });
  dirty.keys.clear();
  scheduleRender();
}

// ---------------------------------------------------------------------------------------------
// Network

const sitePath = (s, tail) => `/v1/sites/${encodeURIComponent(s.site)}/${tail}`;
const isCurrent = (s) => s !== null && s === session && !s.controller.signal.aborted;

async function problemFrom(response) {
  const problem = { status: response.status, title: `HTTP ${response.status}`, detail: '' };
  try {
    const body = await response.json();
    if (typeof body?.title === 'string') problem.title = body.title;
    if (typeof body?.detail === 'string') problem.detail = body.detail;
  } catch {
    // Not a problem document (a proxy error page, say): the status line is all there is.
  }
  return problem;
}

async function apiFetch(s, path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...options.headers, Authorization: `Bearer ${s.token}` },
    signal: s.controller.signal,
    cache: 'no-store',
  });
  if (!response.ok) throw new ProblemError(await problemFrom(response));
  return response;
}

/** Reports a failed call; `true` if the session must stop (the token was rejected). */
function handleApiError(s, error, suffix = '') {
  if (!isCurrent(s)) return true;
  if (error instanceof ProblemError && error.problem.status === 401) {
    tokenRejected(error.message);
    return true;
  }
  // fetch reports network failures as TypeError; the browser already logs those.
  if (error instanceof ProblemError) setStatus(`${error.message}${suffix}`, 'error');
  else {
    if (!(error instanceof TypeError)) console.error(error);
    setStatus(`Connection problem: ${error.message}.${suffix}`, 'error');
  }
  return false;
}

async function loadAvailability(s) {
  const response = await apiFetch(s, sitePath(s, 'availability'));
  const body = await response.json();
  if (!isCurrent(s)) return;
  applyCounters(body.counters, { replaceZones: true });
  s.snapshotVersion = typeof body.version === 'string' ? body.version : null;
  s.snapshotLoaded = true;
}

/** Incremental SSE parser: feed it decoded text, get back complete events. */
function createSseParser() {
  let buffer = '';
  let event = { id: null, type: '', data: [] };
  const done = [];

  function takeLine(line) {
    if (line === '') {
      if (event.data.length > 0) done.push({ id: event.id, type: event.type || 'message', data: event.data.join('\n') });
      event = { id: null, type: '', data: [] };
      return;
    }
    if (line.startsWith(':')) return; // comment, e.g. the server's heartbeat
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') event.id = value;
    else if (field === 'event') event.type = value;
    else if (field === 'data') event.data.push(value);
  }

  return function push(text) {
    buffer += text;
    const endings = /\r\n|\r|\n/g;
    let start = 0;
    for (let match = endings.exec(buffer); match; match = endings.exec(buffer)) {
      // A lone '\r' at the very end may be the first half of a CRLF split across chunks.
      if (match[0] === '\r' && match.index === buffer.length - 1) break;
      takeLine(buffer.slice(start, match.index));
      start = endings.lastIndex;
    }
    buffer = buffer.slice(start);
    return done.splice(0);
  };
}

async function readEvents(s, response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parse = createSseParser();
  let silence = null;
  try {
    for (;;) {
      // A half-open connection never ends: treat silence past two heartbeats as a break.
      const timeout = new Promise((resolve) => {
        silence = setTimeout(() => resolve({ silent: true }), STREAM_SILENCE_MS);
      });
      const next = await Promise.race([reader.read(), timeout]);
      clearTimeout(silence);
      if (next.silent) return 'ended';
      const { value, done } = next;
      if (done) return 'ended';
      for (const event of parse(decoder.decode(value, { stream: true }))) {
        if (!isCurrent(s)) return 'stopped';
        if (event.type === 'resync') return handleResync(s, event);
        applyEvent(s, event);
      }
    }
  } finally {
    clearTimeout(silence);
    reader.cancel().catch(() => {});
  }
}

function applyEvent(s, event) {
  if (event.id) s.lastId = event.id;
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (error) {
    console.error(`unreadable ${event.type} event ${event.id}`, error);
    return;
  }
  const at = idMs(event.id);
  const counters = Array.isArray(data?.counters) ? data.counters : [];
  // capacity_changed states each counter's zones in full (absent: restriction lifted). Events
  // the snapshot already includes (replayed with after=0) only build the history.
  const newer = !s.snapshotVersion || !event.id || idAfter(event.id, s.snapshotVersion);
  applyCounters(counters, { replaceZones: event.type === 'capacity_changed', at, historyOnly: !newer });
  // A capacity_changed can carry 10,000 counters: keep only what the feed shows, and the count.
  pushFeed({
    id: event.id ?? '',
    type: event.type,
    at,
    counters: counters.slice(0, FEED_COUNTERS_SHOWN),
    countersTotal: counters.length,
    reservation: data?.reservation ?? null,
  });
}

function handleResync(s, event) {
  let reason = 'unknown';
  let detail = '';
  try {
    const body = JSON.parse(event.data);
    if (typeof body?.reason === 'string') reason = body.reason;
    if (typeof body?.detail === 'string') detail = body.detail;
  } catch {
    // Keep the defaults: a resync is obeyed whatever its body says.
  }
  setStatus(`Resync (${reason})${detail ? `: ${detail}` : ''}. Reloading…`, 'warn');
  resetSiteState();
  s.lastId = null;
  s.snapshotLoaded = false;
  return 'resync';
}

/** One connection replays history (after=0) and then follows live; reconnects keep state. */
async function runStream(s) {
  while (isCurrent(s)) {
    try {
      if (!s.snapshotLoaded) await loadAvailability(s);
      const after = encodeURIComponent(s.lastId ?? '0');
      const response = await apiFetch(s, sitePath(s, `events?after=${after}`), {
        headers: { Accept: 'text/event-stream' },
      });
      if (!isCurrent(s)) return;
      setStatus(`Live: site ${s.site}`, 'ok');
      const outcome = await readEvents(s, response);
      if (outcome === 'ended' && isCurrent(s)) setStatus('Event stream ended; reconnecting…', 'warn');
      // After a resync, show the fresh snapshot at once; the stream reopens after the wait.
      if (outcome === 'resync' && isCurrent(s)) await loadAvailability(s);
    } catch (error) {
      if (error?.name === 'AbortError' || handleApiError(s, error, ' Retrying in a moment.')) return;
    }
    // Waiting also keeps a store that keeps failing (resync "unavailable") from a hot loop.
    await sleep(RECONNECT_MS, s.controller.signal);
  }
}

async function pollStats(s) {
  while (isCurrent(s)) {
    try {
      const response = await apiFetch(s, sitePath(s, 'stats'));
      const body = await response.json();
      if (!isCurrent(s)) return;
      state.stats = body;
      dirty.rates = true;
      dirty.history = true; // the history line runs up to "now"
      s.statsError = null;
      scheduleRender();
    } catch (error) {
      if (error?.name === 'AbortError' || !isCurrent(s)) return;
      if (error instanceof ProblemError && error.problem.status === 403) {
        handleApiError(s, error, ' (rates are unavailable with this token)');
        return; // polling again cannot succeed with this token
      }
      // Report each distinct failure once rather than rewriting the status every second.
      if (error.message !== s.statsError) {
        s.statsError = error.message;
        if (handleApiError(s, error, ' (rates)')) return;
      }
    }
    await sleep(STATS_POLL_MS, s.controller.signal);
  }
}

async function saveCapacity(change) {
  const s = session;
  if (!isCurrent(s) || s.site !== change.site) {
    setStatus('No longer connected to that site: nothing was changed.', 'error');
    return;
  }
  state.saving = true;
  scheduleRender();
  setStatus(`Saving capacity of ${plural(change.counters.length, 'counter')}…`);
  try {
    const response = await apiFetch(s, sitePath(s, 'capacity'), {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ counters: change.counters }),
    });
    const body = await response.json();
    if (!isCurrent(s)) return;
    // Show the new capacities at once. Not `used`: it is as of the script, and reservation
    // events that arrived meanwhile are newer. The capacity_changed event confirms the rest.
    applyCapacities(body.counters);
    setStatus('Capacity saved', 'ok');
  } catch (error) {
    if (error?.name !== 'AbortError') handleApiError(s, error);
  } finally {
    state.saving = false;
    scheduleRender();
  }
}

// ---------------------------------------------------------------------------------------------
// Session

function connect(token, site) {
  stopSession();
  resetSiteState();
  state.stats = null;
  dirty.rates = true;
  state.selected = null;
  session = { token, site, controller: new AbortController(), lastId: null, snapshotLoaded: false, statsError: null };
  setStatus(`Connecting to site ${site}…`);
  updateConnectionUi();
  runStream(session);
  pollStats(session);
}

function stopSession() {
  session?.controller.abort();
  session = null;
}

function clearDisplay() {
  resetSiteState();
  state.stats = null;
  state.selected = null;
  dirty.rates = true;
  updateConnectionUi();
}

function disconnect() {
  stopSession();
  sessionStorage.removeItem(TOKEN_KEY);
  $('token').value = '';
  clearDisplay();
  setStatus('Disconnected. The token is forgotten.');
}

function tokenRejected(message) {
  stopSession();
  sessionStorage.removeItem(TOKEN_KEY);
  clearDisplay();
  const token = $('token');
  token.value = '';
  setInvalid(token, true);
  token.focus();
  setStatus(`Token rejected (${message}). Enter the admin token again.`, 'error');
}

function updateConnectionUi() {
  $('disconnect').hidden = !session && !sessionStorage.getItem(TOKEN_KEY);
  scheduleRender();
}

function onConnectSubmit(event) {
  event.preventDefault();
  const tokenInput = $('token');
  const siteInput = $('site');
  const token = tokenInput.value.trim() || sessionStorage.getItem(TOKEN_KEY) || '';
  const site = siteInput.value.trim();
  setInvalid(tokenInput, !token);
  setInvalid(siteInput, !SITE_PATTERN.test(site));
  if (!token) {
    setStatus('Enter the admin token.', 'error');
    tokenInput.focus();
    return;
  }
  if (!SITE_PATTERN.test(site)) {
    setStatus('A site id is 1 to 64 lowercase letters, digits, _ or -, starting with a letter or digit.', 'error');
    siteInput.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  tokenInput.value = ''; // kept in sessionStorage only, not in the form
  const url = new URL(window.location.href);
  url.searchParams.set('site', site);
  window.history.replaceState(null, '', url);
  connect(token, site);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

function render() {
  renderQueued = false;
  if (dirty.structure) buildCounterTables();
  if (dirty.counters) {
    for (const key of dirty.keys) {
      const cell = view.cells.get(key);
      const counter = state.counters.get(key);
      if (cell && counter) updateCell(cell, counter);
    }
    dirty.keys.clear();
    renderTotalsAndAlerts();
    dirty.counters = false;
  }
  if (dirty.feed) renderFeed();
  if (dirty.rates) renderRates();
  if (dirty.history) renderHistory();
  renderEditForm();
}

function slotGrid(counters) {
  const parts = counters.map((c) => DATED_SLOT.exec(c.slot));
  if (counters.length > 0 && parts.every(Boolean)) {
    const days = [...new Set(parts.map((p) => p[1]))].sort(compareText);
    const columns = [...new Set(parts.map((p) => p[2]))].sort(compareText);
    const rows = new Map(days.map((day) => [day, new Map()]));
    counters.forEach((c, i) => rows.get(parts[i][1]).set(parts[i][2], c));
    return { corner: 'Day', columns, rows: [...rows].map(([label, cells]) => ({ label, cells })) };
  }
  const cells = new Map(counters.map((c) => [c.slot, c]));
  return { corner: 'Slot', columns: counters.map((c) => c.slot), rows: [{ label: 'All slots', cells }] };
}

function buildCell(counter) {
  const cell = el('button', { className: 'cell', attrs: { type: 'button' } }, [
    el('span', { className: 'cell-count' }),
    el('span', { className: 'cell-note' }),
    el('span', { className: 'cell-bar', attrs: { 'aria-hidden': 'true' } }, [el('span', { className: 'cell-fill' })]),
  ]);
  cell.dataset.resource = counter.resource;
  cell.dataset.slot = counter.slot;
  updateCell(cell, counter);
  return cell;
}

function updateCell(cell, counter) {
  const kind = counterState(counter);
  const ratio = fillRatio(counter);
  cell.dataset.state = kind;
  cell.querySelector('.cell-count').textContent = `${counter.used}/${counter.capacity}`;
  cell.querySelector('.cell-note').textContent = counterNote(counter, kind);
  cell.querySelector('.cell-fill').style.width = `${(ratio * 100).toFixed(1)}%`;
  cell.style.setProperty('--fill', ratio.toFixed(3));
  cell.setAttribute('aria-label', counterLabel(counter));
  cell.setAttribute('aria-pressed', String(counterKey(counter.resource, counter.slot) === state.selected));
}

function buildResourceTable(resource, counters) {
  const grid = slotGrid(counters);
  const totals = el('span', { className: 'totals' });
  const badge = el('span', { className: 'badge', text: 'Featured' });
  const caption = el('caption', {}, [el('span', { className: 'caption-name', text: resource }), totals, badge]);
  const head = el('tr', {}, [el('th', { text: grid.corner, attrs: { scope: 'col' } })]);
  for (const column of grid.columns) head.append(el('th', { text: column, attrs: { scope: 'col' } }));
  const body = el('tbody');
  for (const row of grid.rows) {
    const tr = el('tr', {}, [el('th', { text: row.label, attrs: { scope: 'row' } })]);
    for (const column of grid.columns) {
      const counter = row.cells.get(column);
      const td = el('td', counter ? {} : { className: 'missing', text: '—' });
      if (counter) {
        const cell = buildCell(counter);
        view.cells.set(counterKey(resource, counter.slot), cell);
        td.append(cell);
      }
      tr.append(td);
    }
    body.append(tr);
  }
  const table = el('table', { className: 'heatmap' }, [caption, el('thead', {}, [head]), body]);
  // The scroller is focusable so keyboard users can scroll a wide table.
  const scroller = el('div', {
    className: 'table-scroll',
    attrs: { tabindex: '0', role: 'region', 'aria-label': `${resource} counters` },
  }, [table]);
  const wrapper = el('div', { className: 'resource' }, [scroller]);
  wrapper.dataset.resource = resource;
  wrapper.dataset.featured = 'false';
  view.resources.set(resource, { wrapper, totals, badge, scroller });
  return wrapper;
}

/** Rebuilds every table (only when counters appear or vanish), keeping focus and scroll. */
function buildCounterTables() {
  const active = document.activeElement;
  const focusKey = active?.classList?.contains('cell') ? counterKey(active.dataset.resource, active.dataset.slot) : null;
  const scrolls = new Map([...view.resources].map(([name, parts]) => [name, parts.scroller.scrollLeft]));
  view.cells.clear();
  view.resources.clear();
  const groups = new Map();
  for (const counter of sortedCounters()) {
    if (!groups.has(counter.resource)) groups.set(counter.resource, []);
    groups.get(counter.resource).push(counter);
  }
  const container = $('counters-body');
  const tables = [...groups].map(([resource, counters]) => buildResourceTable(resource, counters));
  if (tables.length === 0) tables.push(el('p', { className: 'empty', text: session ? 'No counters at this site yet.' : 'No counters yet.' }));
  container.replaceChildren(...tables);
  for (const [name, left] of scrolls) view.resources.get(name)?.scroller.scrollTo({ left });
  if (focusKey) view.cells.get(focusKey)?.focus();
  dirty.structure = false;
  dirty.keys.clear(); // freshly built cells are current
  dirty.counters = true; // totals and alerts still need a pass
}

function resourceTotals() {
  const totals = new Map();
  for (const c of state.counters.values()) {
    const t = totals.get(c.resource) ?? { used: 0, capacity: 0 };
    t.used += c.used;
    t.capacity += c.capacity;
    totals.set(c.resource, t);
  }
  for (const t of totals.values()) {
    t.featured = t.capacity > 0 ? t.used >= FEATURED_RATIO * t.capacity : t.used > 0;
    t.percent = t.capacity > 0 ? Math.round((t.used / t.capacity) * 100) : null;
  }
  return totals;
}

function totalsText(t) {
  return `${t.used}/${t.capacity} booked${t.percent === null ? '' : ` (${t.percent}%)`}`;
}

function renderTotalsAndAlerts() {
  const totals = resourceTotals();
  for (const [resource, t] of totals) {
    const parts = view.resources.get(resource);
    if (!parts) continue;
    parts.totals.textContent = totalsText(t);
    parts.badge.hidden = !t.featured;
    parts.wrapper.dataset.featured = String(t.featured);
  }
  renderAlerts(totals);
}

/** The alert lines as plain data, so an unchanged list is not rebuilt (keeps keyboard focus). */
function alertEntries(totals) {
  const entries = [];
  for (const [resource, t] of totals) {
    if (t.featured) entries.push({ state: 'featured', word: 'Featured', text: ` ${resource}: ${totalsText(t)}` });
  }
  let hidden = 0;
  for (const c of sortedCounters()) {
    const kind = counterState(c);
    if (kind === 'open') continue;
    if (entries.length >= ALERTS_MAX) { hidden += 1; continue; }
    const extra = kind === 'deficit' ? `, deficit ${c.used - c.capacity}` : '';
    entries.push({
      state: kind,
      word: kind === 'almost-full' ? 'almost full' : 'full',
      resource: c.resource,
      slot: c.slot,
      text: ` ${c.used}/${c.capacity}${extra}`,
    });
  }
  return { entries, hidden };
}

function alertItem(entry) {
  const parts = [el('span', { className: 'alert-kind', text: entry.word })];
  if (entry.slot !== undefined) {
    // A button, so the alert also selects its counter (for editing and history).
    const select = el('button', { className: 'link', text: `${entry.resource} ${entry.slot}`, attrs: { type: 'button' } });
    select.dataset.resource = entry.resource;
    select.dataset.slot = entry.slot;
    parts.push(' ', select);
  }
  parts.push(entry.text);
  const li = el('li', { className: 'alert' }, parts);
  li.dataset.state = entry.state;
  return li;
}

function renderAlerts(totals) {
  const { entries, hidden } = alertEntries(totals);
  const signature = JSON.stringify([entries, hidden]);
  if (signature === view.alertsSignature) return;
  view.alertsSignature = signature;
  const items = entries.map(alertItem);
  if (hidden > 0) items.push(el('li', { className: 'alert more', text: `and ${hidden} more` }));
  if (items.length === 0) items.push(el('li', { className: 'empty', text: 'No alerts.' }));
  $('alerts-list').replaceChildren(...items);
}

function describeCounters(counters, total = counters.length) {
  const shown = counters.slice(0, FEED_COUNTERS_SHOWN).map((c) => `${c.resource} ${c.slot} ${c.used}/${c.capacity}`);
  const more = total - shown.length;
  return shown.join('; ') + (more > 0 ? `; and ${more} more` : '');
}

function describeReservation(reservation) {
  const id = String(reservation.id ?? '').slice(0, 8);
  const items = Array.isArray(reservation.items) ? reservation.items : [];
  const quantities = items.map((item) => `${item.resource} ${item.slot} × ${item.quantity}`).join(', ');
  return `reservation ${id}${quantities ? `: ${quantities}` : ''}`;
}

function feedItem(item, highlight) {
  const time = Number.isFinite(item.at)
    ? el('time', { className: 'feed-time', text: clock(item.at), attrs: { datetime: new Date(item.at).toISOString() } })
    : el('span', { className: 'feed-time', text: '—' });
  const li = el('li', { className: highlight ? 'feed-item highlight' : 'feed-item' }, [
    time,
    el('span', { className: 'feed-type', text: TYPE_WORDS[item.type] ?? item.type }),
    item.reservation ? el('span', { className: 'feed-reservation', text: describeReservation(item.reservation) }) : null,
    item.counters.length > 0 ? el('span', { className: 'feed-counters', text: describeCounters(item.counters, item.countersTotal) }) : null,
  ]);
  li.dataset.type = item.type;
  li.dataset.id = item.id;
  return li;
}

function renderFeed() {
  let highlights = 0;
  const items = state.feed.map((item) => {
    const highlight = ALERT_TYPES.has(item.type) && highlights < ALERT_HIGHLIGHT_MAX;
    if (highlight) highlights += 1;
    return feedItem(item, highlight);
  });
  if (items.length === 0) items.push(el('li', { className: 'empty', text: session ? 'Waiting for events…' : 'No events yet.' }));
  $('feed').replaceChildren(...items);
  dirty.feed = false;
}

function renderRates() {
  dirty.rates = false;
  const chart = $('rates-chart');
  const stats = state.stats;
  if (!stats || !Number.isFinite(stats.now)) {
    $('rate-placed').value = '–';
    $('rate-refused').value = '–';
    chart.replaceChildren();
    chart.setAttribute('aria-label', 'No rate data yet');
    return;
  }
  const bySecond = new Map((stats.seconds ?? []).map((s) => [s.at, s]));
  const last = bySecond.get(stats.now - 1); // the last completed second
  $('rate-placed').value = String(last?.placed ?? 0);
  $('rate-refused').value = String(last?.refused ?? 0);
  const seconds = Array.from({ length: RATE_BARS }, (_, i) => {
    const at = stats.now - RATE_BARS + i;
    const s = bySecond.get(at);
    return { at, placed: s?.placed ?? 0, refused: s?.refused ?? 0 };
  });
  const peak = Math.max(1, ...seconds.map((s) => s.placed + s.refused));
  const height = 60;
  const width = 240 / RATE_BARS;
  const bars = seconds.map((s, i) => {
    const placedH = (s.placed / peak) * height;
    const refusedH = (s.refused / peak) * height;
    const x = (i * width).toFixed(2);
    const group = svg('g');
    group.append(
      svg('title', {}, `${clock(s.at * 1000, false)}: ${s.placed} placed, ${s.refused} refused`),
      svg('rect', { class: 'bar-placed', x, width: width * 0.8, y: 62 - placedH, height: placedH }),
      svg('rect', { class: 'bar-refused', x, width: width * 0.8, y: 62 - placedH - refusedH, height: refusedH }),
    );
    return group;
  });
  chart.replaceChildren(svg('line', { class: 'baseline', x1: 0, x2: 240, y1: 62.5, y2: 62.5 }), ...bars);
  const placed = seconds.reduce((n, s) => n + s.placed, 0);
  const refused = seconds.reduce((n, s) => n + s.refused, 0);
  chart.setAttribute('aria-label', `Last ${RATE_BARS} seconds: ${placed} placed, ${refused} refused; busiest second ${peak} attempts`);
}

function stepPath(points, value, x, y, endAt) {
  let d = `M${x(points[0].at).toFixed(1)},${y(value(points[0])).toFixed(1)}`;
  for (const p of points.slice(1)) d += `H${x(p.at).toFixed(1)}V${y(value(p)).toFixed(1)}`;
  return `${d}H${x(endAt).toFixed(1)}`;
}

function drawHistoryChart(chart, points) {
  const [left, right, top, bottom] = [48, 590, 12, 196];
  const start = points[0].at;
  const end = Math.max(points.at(-1).at, Date.now(), start + 1000);
  const yMax = Math.max(1, ...points.map((p) => Math.max(p.used, p.capacity)));
  const x = (at) => left + ((at - start) / (end - start)) * (right - left);
  const y = (v) => bottom - (v / yMax) * (bottom - top);
  chart.replaceChildren(
    svg('line', { class: 'axis', x1: left, x2: right, y1: bottom, y2: bottom }),
    svg('line', { class: 'axis', x1: left, x2: left, y1: top, y2: bottom }),
    svg('text', { class: 'axis-label', x: left - 6, y: top + 4, 'text-anchor': 'end' }, String(yMax)),
    svg('text', { class: 'axis-label', x: left - 6, y: bottom, 'text-anchor': 'end' }, '0'),
    svg('text', { class: 'axis-label', x: left, y: bottom + 18 }, clock(start, false)),
    svg('text', { class: 'axis-label', x: right, y: bottom + 18, 'text-anchor': 'end' }, clock(end, false)),
    svg('path', { class: 'line-capacity', d: stepPath(points, (p) => p.capacity, x, y, end) }),
    svg('path', { class: 'line-used', d: stepPath(points, (p) => p.used, x, y, end) }),
  );
}

function renderHistory() {
  dirty.history = false;
  const chart = $('history-chart');
  const summary = $('history-summary');
  const counter = state.selected ? state.counters.get(state.selected) : null;
  if (!counter) {
    const text = state.selected ? 'The selected counter is not available' : 'Select a counter';
    $('history-heading').textContent = 'History';
    chart.replaceChildren();
    chart.setAttribute('aria-label', text);
    summary.textContent = text;
    return;
  }
  const name = `${counter.resource} ${counter.slot}`;
  $('history-heading').textContent = `History of ${name}`;
  const points = state.history.get(state.selected) ?? [];
  const now = `used now ${counter.used} of ${counter.capacity}`;
  // With no change received yet, still draw the current level so the chart is never blank.
  drawHistoryChart(chart, points.length > 0 ? points : [{ at: Date.now(), used: counter.used, capacity: counter.capacity }]);
  const text = points.length > 0
    ? `${plural(points.length, 'change')} since ${clock(points[0].at, false)}; ${now}`
    : `No changes received yet; ${now}`;
  chart.setAttribute('aria-label', `Used and capacity of ${name} over time: ${text}`);
  summary.textContent = text;
}

function renderEditForm() {
  const counter = state.selected ? state.counters.get(state.selected) : null;
  // Not disabled while saving: that would drop the focus the dialog just gave back to Apply.
  $('edit-fields').disabled = !counter || !session;
  $('edit-selected').textContent = counter
    ? `${counter.resource} ${counter.slot}: ${counter.used} of ${counter.capacity} used${counter.zones ? ` (zones: ${counter.zones.join(', ')})` : ''}`
    : 'Select a counter';
}

// ---------------------------------------------------------------------------------------------
// Selection and capacity editing

function selectCounter(resource, slot) {
  const key = counterKey(resource, slot);
  const previous = state.selected;
  state.selected = previous === key ? null : key; // clicking the selected cell again clears it
  for (const k of [previous, state.selected]) {
    const cell = k && view.cells.get(k);
    if (cell) cell.setAttribute('aria-pressed', String(k === state.selected));
  }
  const counter = state.counters.get(state.selected);
  if (counter) $('edit-capacity').value = String(counter.capacity);
  dirty.history = true;
  scheduleRender();
}

function onCellClick(event) {
  const target = event.target.closest('button.cell, #alerts-list button.link');
  if (target) selectCounter(target.dataset.resource, target.dataset.slot);
}

function planChange(selected, scope, capacity) {
  const day = selected.slot.match(/^\d{4}-\d{2}-\d{2}/)?.[0];
  const targets = scope === 'day' && day
    ? sortedCounters().filter((c) => c.resource === selected.resource && c.slot.startsWith(day))
    : [selected];
  return {
    site: session.site,
    day: scope === 'day' ? day : undefined,
    resource: selected.resource,
    capacity,
    before: targets.map((c) => ({ slot: c.slot, capacity: c.capacity, used: c.used, zones: c.zones })),
    // A counter sent without zones loses its restriction, so always resend the ones it has.
    counters: targets.map((c) => ({ resource: c.resource, slot: c.slot, capacity, ...(c.zones ? { zones: [...c.zones] } : {}) })),
  };
}

function confirmLines(change) {
  const lines = change.before.slice(0, CONFIRM_LINES_MAX).map((c) => {
    const deficit = c.used > change.capacity ? ` — below used ${c.used}: deficit ${c.used - change.capacity}` : '';
    const zones = c.zones ? ` (zones kept: ${c.zones.join(', ')})` : '';
    return `${change.resource} ${c.slot}: ${c.capacity} → ${change.capacity}${deficit}${zones}`;
  });
  const more = change.before.length - lines.length;
  if (more > 0) lines.push(`and ${more} more`);
  const deficits = change.before.filter((c) => c.used > change.capacity).length;
  if (deficits > 0) lines.push(`Warning: ${plural(deficits, 'counter')} would go below used and show a deficit.`);
  return lines;
}

function onEditSubmit(event) {
  event.preventDefault();
  const counter = state.selected ? state.counters.get(state.selected) : null;
  if (!counter || !session) return;
  if (state.saving) {
    setStatus('The previous change is still being saved.', 'warn');
    return;
  }
  const input = $('edit-capacity');
  const capacity = input.value.trim() === '' ? Number.NaN : Number(input.value);
  const valid = Number.isInteger(capacity) && capacity >= 0 && capacity <= CAPACITY_MAX;
  setInvalid(input, !valid);
  if (!valid) {
    setStatus(`Capacity must be a whole number from 0 to ${CAPACITY_MAX}.`, 'error');
    input.focus();
    return;
  }
  const change = planChange(counter, $('edit-scope').value, capacity);
  if (change.counters.length > PUT_COUNTERS_MAX) {
    setStatus(`That would change ${change.counters.length} counters; a change has at most ${PUT_COUNTERS_MAX}.`, 'error');
    return;
  }
  const summary = change.day
    ? `Set capacity of ${plural(change.counters.length, 'counter')} of ${change.resource} on ${change.day} to ${capacity}:`
    : `Set capacity of ${change.resource} ${counter.slot} to ${capacity}:`;
  $('confirm-text').replaceChildren(
    el('span', { className: 'confirm-summary', text: summary }),
    ...confirmLines(change).map((line) => el('span', { className: 'confirm-line', text: line })),
  );
  pendingChange = change;
  $('confirm').showModal();
}

function onConfirm() {
  const change = pendingChange;
  pendingChange = null;
  $('confirm').close();
  if (change) saveCapacity(change);
}

function onCancel() {
  pendingChange = null;
  $('confirm').close();
}

// ---------------------------------------------------------------------------------------------
// Start

function init() {
  $('connect').addEventListener('submit', onConnectSubmit);
  $('disconnect').addEventListener('click', disconnect);
  $('counters-body').addEventListener('click', onCellClick);
  $('alerts-list').addEventListener('click', onCellClick);
  $('edit').addEventListener('submit', onEditSubmit);
  $('confirm-yes').addEventListener('click', onConfirm);
  $('confirm-no').addEventListener('click', onCancel);
  $('confirm').addEventListener('close', () => { pendingChange = null; }); // Escape cancels too
  const site = new URLSearchParams(window.location.search).get('site') ?? '';
  const token = sessionStorage.getItem(TOKEN_KEY);
  $('site').value = site;
  if (token && SITE_PATTERN.test(site)) {
    connect(token, site); // a reload reconnects to the same site
  } else {
    setStatus(token ? 'Enter a site and press Open.' : 'Enter the admin token and a site, then press Open.');
    updateConnectionUi();
  }
}

init();
