// Two customers race for the last unit of a slot on the booking page: exactly one gets the
// hold and confirms it, the other is told it is sold out, and both pages show the slot sold
// out without a reload.
import { cell, check, env, open, scenario, assertNotReloaded, result, screenshot, PHONE } from './lib.mjs';

const edge = env('ALLOT_EDGE');
const site = env('ALLOT_SITE');
const resource = env('ALLOT_RESOURCE');
const slot = env('ALLOT_SLOT');

await scenario(async (browser) => {
  const pages = [await open(browser, `${edge}/s/${site}`), await open(browser, `${edge}/s/${site}`)];
  for (const page of pages) {
    await cell(page, resource, slot).and(page.locator('[data-remaining="1"]')).waitFor();
    await cell(page, resource, slot).click();
    await page.locator('#reserve').waitFor();
    await page.fill('#hold-seconds', '120');
  }
  // Both press Reserve at the same moment.
  await Promise.all(pages.map((page) => page.click('#reserve')));
  const kinds = await Promise.all(
    pages.map(async (page) => {
      await page.locator('#message[data-kind="held"], #message[data-kind="sold-out"]').waitFor();
      return page.locator('#message').getAttribute('data-kind');
    }),
  );
  check(kinds.filter((k) => k === 'held').length === 1, `exactly one page holds the unit, got ${kinds}`);
  const winner = pages[kinds.indexOf('held')];
  const loser = pages[kinds.indexOf('sold-out')];
  check(loser !== undefined, `the other page shows sold out, got ${kinds}`);
  const refusal = await loser.locator('#message').innerText();
  check(/sold out/i.test(refusal) && refusal.includes(`${resource} ${slot}`), `the refusal names the slot: ${refusal}`);

  await winner.locator('#countdown').waitFor();
  await cell(winner, resource, slot).and(winner.locator('[data-state="full"]')).waitFor();
  await screenshot(winner, 'booking-desktop');
  await loser.setViewportSize(PHONE);
  await screenshot(loser, 'booking-phone');
  await winner.click('#confirm');
  await winner.locator('#message[data-kind="confirmed"]').waitFor();
  const reference = (await winner.locator('#message').innerText()).match(/Reference ([0-9a-f]{8})/);
  check(reference !== null, 'the confirmation gives a reference');

  for (const page of pages) {
    await cell(page, resource, slot).and(page.locator('[data-state="full"]')).waitFor();
    check((await cell(page, resource, slot).innerText()).includes('Sold out'), 'a sold-out slot says so in words');
    await assertNotReloaded(page, 'a racing page');
  }
  result({ winner_reference: reference[1], kinds });
});
