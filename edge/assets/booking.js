// Allot booking page, served by the edge worker at `/` and `/s/{site}`.
//
// It shows a site's counters from the edge's availability stream (a snapshot, then changed
// counters), lets a customer pick one or several items, reserves them with a hold, and confirms
// or cancels. Every attempt carries one Idempotency-Key: a double click or a retry of the same
// attempt can never make two reservations.
//
// Limits (named, so the page never grows without bound):
//   ITEMS_MAX          32 items per reservation (the contract's limit)
//   HOLD_SECONDS_MAX   86,400 (the contract's limit)
//   EXPIRY_CHECKS_MAX  10 reads after the countdown ends, EXPIRY_CHECK_MS apart
//   POLL_MS            5,000: how often to re-read availability while the stream is down
//   WARN_AT_SECONDS    60 and 10: when the hold's end is announced to screen readers
'use strict';

const ITEMS_MAX = 32;
const HOLD_SECONDS_MAX = 86400;
const QUANTITY_MAX = 1000000;
const EXPIRY_CHECKS_MAX = 10;
const EXPIRY_CHECK_MS = 500;
const POLL_MS = 5000;
const WARN_AT_SECONDS = [60, 10];
/** The share of capacity in use from which a counter shows as almost full (as the events do). */
const ALMOST_FULL_RATIO = 0.9;
const SITE_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const DATED_SLOT = /^(\d{4}-\d{2}-\d{2})T(.+)$/;

const $ = (id) => document.getElementById(id);

const state = {
  site: null,
  /** `resource|slot` -> counter `{resource, slot, capacity, used, remaining, zones?}` */
  counters: new Map(),
  version: '0-0',
  /** `resource|slot` -> quantity wanted */
  picked: new Map(),
  /** The attempt in flight or last failed without an answer: `{key, body}`; reused on retry. */
  attempt: null,
  /** The picked keys the basket shows, to rebuild it only when they change. */
  basketSignature: null,
  /** Set once the coordinator asked for a zone: the field stays visible. */
  zoneAsked: false,
  warned: new Set(),
  busy: false,
  /** The reservation being held: `{reservation, deadlineMs}`. */
  hold: null,
  countdownTimer: null,
  pollTimer: null,
  stream: null,
};

// `|` appears in no resource id or slot, and survives CSS.escape in selectors.
const counterKey = (resource, slot) => `${resource}|${slot}`;

function siteFromPath() {
  const match = location.pathname.match(/^\/s\/([^/]+)\/?$/);
  if (!match) return null;
  const site = decodeURIComponent(match[1]);
  return SITE_PATTERN.test(site) ? site : null;
}

/** Stream ids are `<ms>-<seq>`; compares two of them numerically. */
function newerThan(a, b) {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am > bm || (am === bm && as > bs);
}

function counterState(counter) {
  if (counter.remaining === 0) return 'full';
  if (counter.capacity > 0 && counter.used >= counter.capacity * ALMOST_FULL_RATIO) return 'almost-full';
  return 'open';
}

function slotLabel(slot) {
  const dated = slot.match(DATED_SLOT);
  return dated ? { row: dated[1], column: dated[2] } : { row: '', column: slot };
}

function describe(resource, slot) {
  return `${resource} ${slot}`;
}

// ---------- availability ----------

function applySnapshot(availability) {
  state.counters.clear();
  for (const counter of availability.counters) state.counters.set(counterKey(counter.resource, counter.slot), counter);
  state.version = availability.version;
  for (const key of [...state.picked.keys()]) if (!state.counters.has(key)) state.picked.delete(key);
  render();
}

function applyChange(change) {
  if (!newerThan(change.version, state.version)) return;
  state.version = change.version;
  const changed = [];
  for (const counter of change.counters) {
    const key = counterKey(counter.resource, counter.slot);
    const known = state.counters.get(key);
    // Changes carry no zones: keep the ones the snapshot gave.
    state.counters.set(key, { ...counter, zones: known ? known.zones : undefined });
    changed.push(key);
  }
  render(changed);
}

function follow(site) {
  if (state.stream) state.stream.close();
  const stream = new EventSource(`/v1/sites/${encodeURIComponent(site)}/availability/stream`);
  state.stream = stream;
  stream.addEventListener('snapshot', (event) => {
    stopPolling();
    applySnapshot(JSON.parse(event.data));
    setLive(`Live: updates appear as they happen.`);
  });
  stream.addEventListener('availability', (event) => applyChange(JSON.parse(event.data)));
  stream.addEventListener('open', () => stopPolling());
  stream.addEventListener('error', () => {
    // EventSource reconnects by itself and gets a fresh snapshot; until then, poll.
    setLive('Reconnecting to live updates…');
    startPolling();
  });
}

function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

async function refresh() {
  try {
    const response = await fetch(`/v1/sites/${encodeURIComponent(state.site)}/availability`);
    if (response.ok) {
      const availability = await response.json();
      if (availability.version === state.version || newerThan(availability.version, state.version)) {
        applySnapshot(availability);
      }
    }
  } catch {
    // The stream's reconnect or the next poll will bring it.
  }
}

// ---------- rendering ----------

function render(changedKeys = []) {
  const tables = $('tables');
  const byResource = new Map();
  for (const counter of state.counters.values()) {
    if (!byResource.has(counter.resource)) byResource.set(counter.resource, []);
    byResource.get(counter.resource).push(counter);
  }
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  tables.replaceChildren(...[...byResource.entries()].map(([resource, counters]) => resourceTable(resource, counters)));
  for (const key of changedKeys) {
    const button = tables.querySelector(`button[data-key="${CSS.escape(key)}"]`);
    if (button) button.classList.add('changed');
  }
  if (focused) {
    const again = tables.querySelector(`button[data-key="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  $('grid').hidden = false;
  if (state.counters.size === 0) {
    tables.replaceChildren(paragraph('This site has nothing to book yet.'));
  }
  renderBasket();
}

function paragraph(text) {
  const p = document.createElement('p');
  p.textContent = text;
  return p;
}

function resourceTable(resource, counters) {
  const rows = [];
  const columns = [];
  const cells = new Map();
  for (const counter of counters) {
    const { row, column } = slotLabel(counter.slot);
    if (!rows.includes(row)) rows.push(row);
    if (!columns.includes(column)) columns.push(column);
    cells.set(`${row}\u0000${column}`, counter);
  }
  rows.sort();
  columns.sort();

  const wrapper = document.createElement('div');
  wrapper.className = 'resource';
  const scroll = document.createElement('div');
  scroll.className = 'scroll';
  const table = document.createElement('table');
  const caption = document.createElement('caption');
  caption.textContent = resource;
  table.append(caption);

  const head = document.createElement('tr');
  head.append(headerCell(rows.some((r) => r !== '') ? 'Day' : '', 'col'));
  for (const column of columns) head.append(headerCell(column, 'col'));
  const thead = document.createElement('thead');
  thead.append(head);
  table.append(thead);

  const tbody = document.createElement('tbody');
  for (const row of rows) {
    const tr = document.createElement('tr');
    tr.append(headerCell(row || 'All', 'row'));
    for (const column of columns) {
      const td = document.createElement('td');
      const counter = cells.get(`${row}\u0000${column}`);
      if (counter) td.append(slotButton(counter, column));
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(tbody);
  scroll.append(table);
  wrapper.append(scroll);
  return wrapper;
}

function headerCell(text, scope) {
  const th = document.createElement('th');
  th.scope = scope;
  th.textContent = text;
  return th;
}

function slotButton(counter, column) {
  const key = counterKey(counter.resource, counter.slot);
  const kind = counterState(counter);
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'slot';
  button.dataset.key = key;
  button.dataset.resource = counter.resource;
  button.dataset.slot = counter.slot;
  button.dataset.state = kind;
  button.dataset.remaining = String(counter.remaining);
  const picked = state.picked.has(key);
  button.setAttribute('aria-pressed', String(picked));
  if (kind === 'full' && !picked) button.setAttribute('aria-disabled', 'true');

  const when = document.createElement('span');
  when.className = 'when';
  when.textContent = column;
  const left = document.createElement('span');
  left.className = 'left';
  left.textContent =
    kind === 'full' ? 'Sold out' : kind === 'almost-full' ? `Only ${counter.remaining} left` : `${counter.remaining} left`;
  button.append(when, left);
  button.setAttribute('aria-label', `${describe(counter.resource, counter.slot)}: ${left.textContent}${picked ? ', selected' : ''}`);
  button.addEventListener('click', () => toggle(key));
  return button;
}

function toggle(key) {
  if (state.hold) {
    say('error', 'Confirm or cancel your hold before choosing again.');
    return;
  }
  if (state.picked.has(key)) {
    state.picked.delete(key);
  } else {
    const counter = state.counters.get(key);
    if (!counter) return;
    if (counter.remaining === 0) {
      say('sold-out', `${describe(counter.resource, counter.slot)} is sold out.`);
      return;
    }
    if (state.picked.size >= ITEMS_MAX) {
      say('error', `A reservation holds at most ${ITEMS_MAX} items.`);
      return;
    }
    state.picked.set(key, 1);
  }
  render();
}

function renderBasket() {
  const items = $('items');
  const signature = [...state.picked.keys()].join('\n');
  if (signature === state.basketSignature) {
    // Same selection: update the counts in place, so a quantity being typed keeps its focus.
    for (const li of items.children) {
      const counter = state.counters.get(li.dataset.key);
      if (counter) li.querySelector('.what').textContent = `${describe(counter.resource, counter.slot)} (${counter.remaining} left)`;
    }
    $('basket').hidden = state.picked.size === 0 || state.hold !== null;
    return;
  }
  state.basketSignature = signature;
  items.replaceChildren();
  let zoned = false;
  for (const [key, quantity] of state.picked) {
    const counter = state.counters.get(key);
    if (!counter) continue;
    if (counter.zones && counter.zones.length) zoned = true;
    const li = document.createElement('li');
    li.dataset.key = key;
    const what = document.createElement('span');
    what.className = 'what';
    what.textContent = `${describe(counter.resource, counter.slot)} (${counter.remaining} left)`;
    const id = `qty-${items.children.length}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    label.textContent = 'Quantity';
    const input = document.createElement('input');
    input.id = id;
    input.type = 'number';
    input.min = '1';
    input.max = String(QUANTITY_MAX);
    input.value = String(quantity);
    input.required = true;
    input.addEventListener('change', () => {
      const value = Number(input.value);
      if (Number.isInteger(value) && value >= 1 && value <= QUANTITY_MAX) state.picked.set(key, value);
    });
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'secondary';
    remove.textContent = 'Remove';
    remove.setAttribute('aria-label', `Remove ${describe(counter.resource, counter.slot)}`);
    remove.addEventListener('click', () => {
      toggle(key);
      // The button is gone: put focus back on the slot it came from.
      const slot = $('tables').querySelector(`button[data-key="${CSS.escape(key)}"]`);
      if (slot) slot.focus();
    });
    li.append(what, label, input, remove);
    items.append(li);
  }
  if (zoned || state.zoneAsked) showZone(false);
  else {
    $('zone').hidden = true;
    $('zone-label').hidden = true;
  }
  $('basket').hidden = state.picked.size === 0 || state.hold !== null;
}

// ---------- messages ----------

function setLive(text) {
  $('live').textContent = text;
}

/** Shows a message; `kind` is one of held, confirmed, sold-out, short, expired, cancelled, error. */
function say(kind, text, list = []) {
  const box = $('message');
  box.dataset.kind = kind;
  box.replaceChildren(paragraph(text));
  if (list.length) {
    const ul = document.createElement('ul');
    for (const line of list) {
      const li = document.createElement('li');
      li.textContent = line;
      ul.append(li);
    }
    box.append(ul);
  }
  box.hidden = false;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText || `HTTP ${response.status}` };
  }
}

function slugOf(problem) {
  return typeof problem.type === 'string' ? problem.type.split('/').pop() : '';
}

function explainRefusal(problem) {
  const slug = slugOf(problem);
  if (slug === 'insufficient-capacity' && Array.isArray(problem.shortages)) {
    const soldOut = problem.shortages.every((s) => s.remaining === 0);
    const lines = problem.shortages.map((s) =>
      s.remaining === 0
        ? `${describe(s.resource, s.slot)} is sold out (you asked for ${s.requested}).`
        : `${describe(s.resource, s.slot)} has only ${s.remaining} left (you asked for ${s.requested}).`,
    );
    say(soldOut ? 'sold-out' : 'short', soldOut ? 'Sorry, sold out.' : 'Not enough left.', lines);
    // What is gone leaves the selection; what is short stays, so the quantity can be lowered.
    for (const s of problem.shortages) if (s.remaining === 0) state.picked.delete(counterKey(s.resource, s.slot));
    render();
    return;
  }
  if (slug === 'zone-not-allowed') {
    // Zones can change after the snapshot: ask for one now, and re-read them.
    state.zoneAsked = true;
    say('error', 'These slots are only for some delivery zones: enter yours.', problem.detail ? [problem.detail] : []);
    showZone(true);
    refresh();
    return;
  }
  say('error', problem.title || 'The reservation was refused.', problem.detail ? [problem.detail] : []);
}

// ---------- reserve, confirm, cancel ----------

function showZone(focus) {
  $('zone').hidden = false;
  $('zone-label').hidden = false;
  $('zone').required = true;
  if (focus) $('zone').focus();
}

function requestBody() {
  const items = [];
  for (const [key, quantity] of state.picked) {
    const counter = state.counters.get(key);
    if (counter) items.push({ resource: counter.resource, slot: counter.slot, quantity });
  }
  const body = { items, hold_seconds: Number($('hold-seconds').value) };
  const zone = $('zone').value.trim();
  if (!$('zone').hidden && zone) body.zone = zone;
  const customer = $('customer').value.trim();
  if (customer) body.customer = customer;
  return JSON.stringify(body);
}

async function reserve(event) {
  event.preventDefault();
  // A second click while the first is in flight is the same attempt: ignore it.
  if (state.busy || state.hold) return;
  const hold = Number($('hold-seconds').value);
  if (!Number.isInteger(hold) || hold < 1 || hold > HOLD_SECONDS_MAX) {
    say('error', `Hold for 1 to ${HOLD_SECONDS_MAX} seconds.`);
    return;
  }
  if (state.picked.size === 0) return;
  const body = requestBody();
  // The same body after an unanswered attempt is a retry: same key, so at most one reservation.
  if (!state.attempt || state.attempt.body !== body) state.attempt = { key: crypto.randomUUID(), body };
  const attempt = state.attempt;
  state.busy = true;
  $('reserve').disabled = true;
  $('reserve').textContent = 'Reserving…';
  const sentAt = Date.now();
  try {
    const response = await fetch(`/v1/sites/${encodeURIComponent(state.site)}/reservations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': attempt.key },
      body: attempt.body,
    });
    if (response.status === 201 || response.status === 200) {
      const reservation = await response.json();
      // Only now is the attempt answered: if reading the body failed, a retry reuses the key.
      state.attempt = null;
      placed(reservation, holdDeadline(reservation, response, sentAt));
    } else if (response.status === 429 || response.status >= 500) {
      const retry = response.headers.get('retry-after');
      say('error', `The service is busy. Press Reserve again${retry ? ` in ${retry} s` : ''}: it retries safely.`);
    } else {
      state.attempt = null;
      explainRefusal(await problemOf(response));
    }
  } catch {
    say('error', 'Network problem. Press Reserve again: it retries the same attempt safely.');
  } finally {
    state.busy = false;
    $('reserve').disabled = false;
    $('reserve').textContent = 'Reserve';
  }
}

function summary(reservation) {
  return reservation.items.map((i) => `${i.quantity} × ${describe(i.resource, i.slot)}`).join(', ');
}

/**
 * When the hold ends, on this page's clock. Counted from when the request left, so the page
 * never shows more time than the server gives; a replay (the same attempt answered again) may
 * be for a hold made earlier, so the server's Date bounds it too.
 */
function holdDeadline(reservation, response, sentAt) {
  if (reservation.status !== 'held') return null;
  const expiresAt = Date.parse(reservation.expires_at);
  let deadline = sentAt + (expiresAt - Date.parse(reservation.created_at));
  const serverNow = Date.parse(response.headers.get('date') || '');
  if (response.status === 200 && Number.isFinite(serverNow)) {
    // Date has whole seconds: count the answer as up to a second later than it says.
    deadline = Math.min(deadline, Date.now() + (expiresAt - serverNow - 1000));
  }
  return deadline;
}

function placed(reservation, deadlineMs) {
  state.picked.clear();
  if (reservation.status !== 'held') {
    // A replay can find the attempt's reservation in any state.
    endHold(reservation);
    return;
  }
  state.warned.clear();
  state.hold = { reservation, deadlineMs };
  $('hold-summary').textContent = `Held for you: ${summary(reservation)}. Reference ${reservation.id.slice(0, 8)}.`;
  $('hold').hidden = false;
  $('confirm').disabled = false;
  $('cancel').disabled = false;
  say('held', 'Held. Confirm before the time runs out.');
  render();
  tick();
  state.countdownTimer = setInterval(tick, 250);
  $('confirm').focus();
}

function tick() {
  if (!state.hold) return;
  const leftMs = Math.max(0, state.hold.deadlineMs - Date.now());
  const seconds = Math.ceil(leftMs / 1000);
  $('countdown').textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`;
  for (const at of WARN_AT_SECONDS) {
    if (seconds <= at && seconds > 0 && !state.warned.has(at)) {
      state.warned.add(at);
      setLive(`Your hold ends in ${seconds} seconds.`);
    }
  }
  if (leftMs === 0) {
    clearInterval(state.countdownTimer);
    checkExpired(state.hold.reservation, 0);
  }
}

async function checkExpired(reservation, checks) {
  const site = encodeURIComponent(state.site);
  try {
    const response = await fetch(`/v1/sites/${site}/reservations/${reservation.id}`);
    if (response.ok) {
      const now = await response.json();
      if (now.status !== 'held') return endHold(now);
    }
  } catch {
    // Try again below.
  }
  if (!state.hold) return;
  if (checks + 1 < EXPIRY_CHECKS_MAX) {
    setTimeout(() => checkExpired(reservation, checks + 1), EXPIRY_CHECK_MS);
  } else {
    // Past its end a hold is over on the server too (any read expires it); do not leave the
    // page stuck at 0:00 because the answer did not come.
    endHold({ ...reservation, status: 'expired' });
  }
}

function endHold(reservation) {
  clearInterval(state.countdownTimer);
  state.hold = null;
  $('hold').hidden = true;
  switch (reservation.status) {
    case 'confirmed':
      say('confirmed', `Booked: ${summary(reservation)}. Reference ${reservation.id.slice(0, 8)}.`);
      break;
    case 'expired':
      say('expired', 'Your hold expired, and the items were released. You can choose again.');
      break;
    case 'cancelled':
      say('cancelled', 'Hold cancelled; the items were released.');
      break;
    default:
      say('error', `The reservation is ${reservation.status}.`);
  }
  render();
  // The buttons that had focus are hidden now: move it to the outcome.
  $('message').tabIndex = -1;
  $('message').focus();
}

async function settle(method, path) {
  if (!state.hold) return;
  $('confirm').disabled = true;
  $('cancel').disabled = true;
  const { reservation } = state.hold;
  try {
    const response = await fetch(`/v1/sites/${encodeURIComponent(state.site)}/reservations/${reservation.id}${path}`, {
      method,
    });
    if (response.ok) return endHold(await response.json());
    const problem = await problemOf(response);
    if (slugOf(problem) === 'reservation-not-held') {
      return endHold({ ...reservation, status: 'expired' });
    }
    say('error', problem.title || 'That did not work.', problem.detail ? [problem.detail] : []);
  } catch {
    say('error', 'Network problem. Try again: confirming or cancelling twice is safe.');
  }
  if (state.hold) {
    $('confirm').disabled = false;
    $('cancel').disabled = false;
  }
}

// ---------- start ----------

function start() {
  $('pick-site').addEventListener('submit', (event) => {
    event.preventDefault();
    const site = $('site-input').value.trim();
    if (!SITE_PATTERN.test(site)) {
      say('error', 'A site id is lowercase letters, digits, - and _, starting with a letter or digit.');
      return;
    }
    location.assign(`/s/${encodeURIComponent(site)}`);
  });
  $('reserve-form').addEventListener('submit', reserve);
  $('confirm').addEventListener('click', () => settle('POST', '/confirm'));
  $('cancel').addEventListener('click', () => settle('DELETE', ''));

  const site = siteFromPath() || new URLSearchParams(location.search).get('site');
  if (!site || !SITE_PATTERN.test(site)) {
    $('site-input').focus();
    return;
  }
  state.site = site;
  $('site-input').value = site;
  $('title').textContent = `Book at ${site}`;
  document.title = `Allot: ${site}`;
  setLive('Loading availability…');
  follow(site);
}

start();
