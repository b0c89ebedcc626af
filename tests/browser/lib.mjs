// Shared helpers for the browser scenarios: Debian's Chromium driven by playwright-core.
// Each scenario is run by a Rust test (tests/it/browser.rs) that has started Redis, the
// coordinator and the edge, and passes their addresses in the environment. A scenario exits 0
// when every check held, prints one `result: {json}` line for the Rust side to check against
// the store, and saves screenshots under ALLOT_SCREENSHOTS.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

/** How long any one expectation may wait: generous, so a busy CI machine does not fail a test. */
export const WAIT_MS = 20_000;
/** The viewports of the saved screenshots. */
export const DESKTOP = { width: 1280, height: 900 };
export const PHONE = { width: 390, height: 844 };

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through cargo test (tests/it/browser.rs)`);
  return value;
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.ALLOT_CHROMIUM || '/usr/bin/chromium',
    // Without these, Chromium keeps trying to reach Google's hosts, which this network refuses.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: WAIT_MS,
  });
}

/** A new context and page; page errors and failed console messages fail the scenario. */
export async function open(browser, url, viewport = DESKTOP) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (error) => fail(`page error on ${url}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('Failed to load resource')) {
      fail(`console error on ${url}: ${message.text()}`);
    }
  });
  await page.goto(url);
  await markLoaded(page);
  return page;
}

/** Marks the loaded document: if the page ever reloads, the mark is gone. */
export async function markLoaded(page) {
  await page.evaluate(() => {
    window.allotNotReloaded = true;
  });
}

export async function assertNotReloaded(page, what) {
  const mark = await page.evaluate(() => window.allotNotReloaded === true);
  check(mark, `${what} was reloaded; updates must arrive live`);
}

export function cell(page, resource, slot) {
  return page.locator(`button.slot[data-resource="${resource}"][data-slot="${slot}"]`);
}

export async function screenshot(page, name) {
  const dir = env('ALLOT_SCREENSHOTS');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

export function check(condition, message) {
  if (!condition) fail(message);
}

export function fail(message) {
  console.error(`FAILED: ${message}`);
  process.exit(1);
}

export function result(value) {
  console.log(`result: ${JSON.stringify(value)}`);
}

/** Runs a scenario, failing (exit 1) on any throw, and closing the browser either way. */
export async function scenario(body) {
  const browser = await launch();
  try {
    await body(browser);
  } catch (error) {
    console.error(error);
    await browser.close();
    fail(error.message);
  }
  await browser.close();
}
