// The operations dashboard: it shows a reservation made through the edge within a second,
// rebuilds a counter's history from the stream, and a capacity edit made on it (a whole day,
// with confirmation) reaches an open booking page live. Lowering a capacity below `used`
// shows a deficit.
import { cell, check, env, open, scenario, assertNotReloaded, result, screenshot, PHONE } from './lib.mjs';

const edge = env('ALLOT_EDGE');
const coordinator = env('ALLOT_COORDINATOR');
const token = env('ALLOT_ADMIN_TOKEN');
const site = env('ALLOT_SITE');
/** The bound: the dashboard shows an event within one second of the reservation. */
const FEED_WITHIN_MS = 1000;

function dashboardCell(page, resource, slot) {
  return page.locator(`button.cell[data-resource="${resource}"][data-slot="${slot}"]`);
}

await scenario(async (browser) => {
  const dashboard = await open(browser, `${coordinator}/dashboard`);
  await dashboard.fill('#token', token);
  await dashboard.fill('#site', site);
  await dashboard.click('#connect button[type="submit"]');
  const fullPickers = dashboardCell(dashboard, 'pickers', '2026-12-01T10:00Z');
  await fullPickers.and(dashboard.locator('[data-state="full"]')).waitFor();
  check(/full/i.test(await dashboard.locator('#alerts').innerText()), 'a full counter is an alert');
  // The feed replays the stream: the three reservations made before the page opened are there.
  await dashboard.locator('#feed li[data-type="reservation_placed"]').nth(2).waitFor();

  // A reservation through the edge appears in the feed within a second.
  const response = await fetch(`${edge}/v1/sites/${site}/reservations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
    body: JSON.stringify({ items: [{ resource: 'vans', slot: '2026-12-01T08:00Z', quantity: 2 }] }),
  });
  const placedAt = Date.now();
  check(response.status === 201, `the edge placed the reservation (${response.status})`);
  const reservation = await response.json();
  await dashboard
    .locator('#feed li[data-type="reservation_placed"]', { hasText: reservation.id.slice(0, 8) })
    .waitFor({ timeout: FEED_WITHIN_MS });
  const feedMs = Date.now() - placedAt;
  check(feedMs <= FEED_WITHIN_MS, `the event reached the dashboard in ${feedMs} ms`);
  await dashboardCell(dashboard, 'vans', '2026-12-01T08:00Z').and(dashboard.locator('[aria-label*="2 of 10"]')).waitFor();

  // History of a counter, rebuilt from the stream.
  await fullPickers.click();
  // Capacity set, then 2, 1 and 1 placed: four changes, ending at 4 of 4.
  await dashboard.locator('#history-summary', { hasText: /^4 changes since .*used now 4 of 4$/ }).waitFor();
  check((await dashboard.locator('#history-chart').locator('path, polyline, line').count()) > 0, 'the chart draws');

  // A booking page is open on the same site while capacity changes.
  const booking = await open(browser, `${edge}/s/${site}`);
  const bookedCell = cell(booking, 'vans', '2026-12-02T10:00Z');
  await bookedCell.and(booking.locator('[data-remaining="10"]')).waitFor();

  // Set every vans slot of 2026-12-02 to 3, with confirmation.
  await dashboardCell(dashboard, 'vans', '2026-12-02T10:00Z').click();
  await dashboard.fill('#edit-capacity', '3');
  await dashboard.selectOption('#edit-scope', 'day');
  await dashboard.click('#edit button[type="submit"]');
  await dashboard.locator('#confirm').waitFor();
  const plan = await dashboard.locator('#confirm-text').innerText();
  check(plan.includes('2026-12-02') && plan.includes('3'), `the confirmation says what will change: ${plan}`);
  await dashboard.click('#confirm-yes');
  await dashboard.locator('#status', { hasText: 'Capacity saved' }).waitFor();
  await bookedCell.and(booking.locator('[data-remaining="3"]')).waitFor();
  await assertNotReloaded(booking, 'the booking page');

  // Lowering a capacity below used shows the deficit.
  await fullPickers.click();
  await dashboard.fill('#edit-capacity', '2');
  await dashboard.selectOption('#edit-scope', 'counter');
  await dashboard.click('#edit button[type="submit"]');
  await dashboard.locator('#confirm').waitFor();
  await dashboard.click('#confirm-yes');
  await fullPickers.and(dashboard.locator('[data-state="deficit"]')).waitFor();
  check(/deficit 2/i.test(await fullPickers.innerText()), 'the deficit is shown in words');
  await assertNotReloaded(dashboard, 'the dashboard');

  await screenshot(dashboard, 'dashboard-desktop');
  await dashboard.setViewportSize(PHONE);
  await screenshot(dashboard, 'dashboard-phone');
  result({ reservation_id: reservation.id, feed_ms: feedMs });
});
