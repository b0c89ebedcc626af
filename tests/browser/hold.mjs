// A hold expires on the booking page: the countdown runs out, the page says the hold expired,
// and the capacity shows as available again, all without a reload. The Reserve button is
// double-clicked: one attempt, one Idempotency-Key, one reservation.
import { cell, check, env, markLoaded, open, scenario, assertNotReloaded, result } from './lib.mjs';

const edge = env('ALLOT_EDGE');
const site = env('ALLOT_SITE');
const resource = env('ALLOT_RESOURCE');
const slot = env('ALLOT_SLOT');
const capacity = Number(env('ALLOT_CAPACITY'));
const holdSeconds = env('ALLOT_HOLD_SECONDS');

await scenario(async (browser) => {
  // The site picker at `/` leads to the site's page.
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
  await page.getByLabel('Hold for (seconds)').fill(holdSeconds);
  await page.dblclick('#reserve');
  await page.locator('#message[data-kind="held"]').waitFor();
  const countdown = await page.locator('#countdown').innerText();
  check(/^\d+:\d\d$/.test(countdown), `the countdown shows minutes and seconds: ${countdown}`);
  await slotCell.and(page.locator(`[data-remaining="${capacity - 1}"]`)).waitFor();

  await page.locator('#message[data-kind="expired"]').waitFor();
  check((await page.locator('#countdown').innerText()) === '0:00' || (await page.locator('#hold').isHidden()),
    'the countdown ended');
  check(/expired/i.test(await page.locator('#message').innerText()), 'the page says the hold expired');
  await slotCell.and(page.locator(`[data-remaining="${capacity}"]`)).waitFor();
  await assertNotReloaded(page, 'the booking page');
  result({ expired: true });
});
