// A hold on the booking page: the site picker leads to the site; the first answer to Reserve is
// lost on the way back, and pressing Reserve again retries the same attempt (same
// Idempotency-Key, so one reservation); the countdown runs down to 0:00, the page says the
// hold expired, and the capacity shows as available again, all without a reload.
import { cell, check, env, markLoaded, open, scenario, assertNotReloaded, result } from './lib.mjs';

const edge = env('ALLOT_EDGE');
const site = env('ALLOT_SITE');
const resource = env('ALLOT_RESOURCE');
const slot = env('ALLOT_SLOT');
const capacity = Number(env('ALLOT_CAPACITY'));
const holdSeconds = Number(env('ALLOT_HOLD_SECONDS'));

await scenario(async (browser) => {
  const page = await open(browser, `${edge}/`);
  await page.fill('#site-input', site);
  await page.press('#site-input', 'Enter');
  await page.waitForURL(`${edge}/s/${site}`);
  await markLoaded(page);

  const slotCell = cell(page, resource, slot);
  await slotCell.and(page.locator(`[data-remaining="${capacity}"]`)).waitFor();
  // By keyboard, and the hold field by its label: the page works without a mouse.
  await slotCell.focus();
  await page.keyboard.press('Enter');
  await page.getByLabel('Hold for (seconds)').fill(String(holdSeconds));

  // The first attempt reaches the service, but its answer is lost.
  const keys = [];
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith('/reservations')) {
      keys.push(request.headers()['idempotency-key']);
    }
  });
  const reservations = `${edge}/v1/sites/${site}/reservations`;
  await page.route(reservations, async (route) => {
    await route.fetch();
    await route.abort('connectionreset');
  });
  const firstPress = Date.now();
  await page.click('#reserve');
  await page.locator('#message[data-kind="error"]', { hasText: 'retries the same attempt' }).waitFor();
  await page.unroute(reservations);
  await page.click('#reserve');
  await page.locator('#message[data-kind="held"]').waitFor();
  check(keys.length === 2 && keys[0] && keys[0] === keys[1], `the retry reused the attempt's key: ${keys}`);

  // Watch the countdown from now on.
  await page.evaluate(() => {
    window.countdownSeen = [document.getElementById('countdown').textContent];
    new MutationObserver(() => window.countdownSeen.push(document.getElementById('countdown').textContent)).observe(
      document.getElementById('countdown'),
      { childList: true, characterData: true, subtree: true },
    );
  });
  await slotCell.and(page.locator(`[data-remaining="${capacity - 1}"]`)).waitFor();

  await page.locator('#message[data-kind="expired"]').waitFor();
  const expiredAfterMs = Date.now() - firstPress;
  check(/expired/i.test(await page.locator('#message').innerText()), 'the page says the hold expired');
  check(expiredAfterMs >= holdSeconds * 1000, `the hold ended no earlier than its ${holdSeconds} s (${expiredAfterMs} ms)`);
  const seen = await page.evaluate(() => window.countdownSeen);
  check(seen.at(-1) === '0:00', `the countdown ran down to 0:00: ${seen}`);
  const seconds = seen.map((t) => Number(t.split(':')[0]) * 60 + Number(t.split(':')[1]));
  check(seconds.every((s, i) => i === 0 || s <= seconds[i - 1]), `the countdown only went down: ${seen}`);
  await slotCell.and(page.locator(`[data-remaining="${capacity}"]`)).waitFor();
  await assertNotReloaded(page, 'the booking page');
  result({ keys });
});
