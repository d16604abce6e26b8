// view.mjs URL SHOTS_DIR: opens the live view in Debian's chromium (headless, driven by
// playwright-core) for tests/integration/test_browser.py, and reports what the page shows.
//
// It says "live" on stdout once the page's stream is open, then waits for a line on stdin
// (the test has sent and fetched mail meanwhile), then waits for the sessions to be shown
// closed, clicks through the page (a message's journey, "try it yourself", the AUTH PLAIN
// helper, "Save as text", "Replay"), takes screenshots into SHOTS_DIR, and writes one JSON
// object of what it saw on stdout. The test asserts on it; this only looks.
import {chromium} from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const [url, shots] = process.argv.slice(2);
fs.mkdirSync(shots, {recursive: true});
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const seen = {errors: []};
try {
  const page = await browser.newPage({viewport: {width: 1400, height: 1000}, acceptDownloads: true});
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') seen.errors.push(m.text()); });
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'live');
  console.log('live');
  const input = readline.createInterface({input: process.stdin});
  await new Promise((resolve) => input.once('line', resolve));
  input.close();

  // Both sessions are shown to their end.
  await page.waitForSelector('.card[data-proto="smtp"][data-state="closed"] .band-title',
                             {timeout: 20000});
  await page.waitForSelector('.card[data-proto="pop3"][data-state="closed"]', {timeout: 20000});
  await page.screenshot({path: path.join(shots, 'sessions.png'), fullPage: true});
  seen.cards = await page.$$eval('.card', (cards) => cards.map((c) => ({
    proto: c.dataset.proto,
    state: c.dataset.state,
    title: c.querySelector('h2').textContent,
    band: Array.from(c.querySelectorAll('.band-title'), (b) => b.textContent),
    inBand: Array.from(c.querySelectorAll('.band .line'), (l) => l.textContent),
    lines: Array.from(c.querySelectorAll('.line'), (l) => l.textContent),
    notes: Array.from(c.querySelectorAll('.note'), (n) => n.textContent),
    links: Array.from(c.querySelectorAll('.note a'), (a) => a.href),
    warnings: Array.from(c.querySelectorAll('.warnings li'), (w) => w.textContent),
    flags: Array.from(c.querySelectorAll('.flag'), (f) => f.textContent),
  })));

  // One message's journey, from the list of messages.
  await page.locator('#messages li.msg', {hasText: 'removed'}).click();
  await page.waitForSelector('#journey li[data-step="removed"]', {timeout: 10000});
  seen.journey = await page.$$eval('#journey li', (lis) => lis.map((li) => ({
    step: li.dataset.step, text: li.textContent})));
  await page.locator('#journey').screenshot({path: path.join(shots, 'journey.png')});

  // Try it yourself, and the AUTH PLAIN helper (worked out in the page).
  await page.check('#try-toggle');
  seen.tries = await page.$$eval('.try', (ts) => ts.map((t) => t.textContent));
  seen.triesShown = await page.$$eval('.try', (ts) => ts.filter((t) => t.offsetParent).length);
  await page.fill('#ap-user', 'bob@example.test');
  await page.fill('#ap-pass', 'helper-pw');
  seen.authPlain = await page.textContent('#ap-out');
  await page.screenshot({path: path.join(shots, 'try-it.png'), fullPage: true});
  await page.uncheck('#try-toggle');
  await page.fill('#ap-pass', '');
  await page.fill('#ap-user', '');

  // Save a session as annotated text.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('.card[data-proto="smtp"] button.save'),
  ]);
  seen.savedName = download.suggestedFilename();
  seen.saved = fs.readFileSync(await download.path(), 'utf8');

  // Replay the POP3 session: three steps shown, then one back.
  const pop3 = page.locator('.card[data-proto="pop3"]');
  await pop3.locator('button.replay').click();
  await pop3.locator('button.next').click();
  await pop3.locator('button.next').click();
  await pop3.locator('button.next').click();
  await pop3.locator('button.back').click();
  seen.replay = {
    where: await pop3.locator('.where').textContent(),
    shown: await pop3.locator('.lines .line:not(.hidden), .lines .note:not(.hidden), ' +
                              '.lines .flag:not(.hidden)').count(),
  };
  await pop3.screenshot({path: path.join(shots, 'replay.png')});
  await pop3.locator('button.stop').click();

  seen.html = await page.content();
  seen.text = await page.evaluate(() => document.body.innerText);
} catch (e) {
  seen.errors.push(String(e && e.stack || e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
