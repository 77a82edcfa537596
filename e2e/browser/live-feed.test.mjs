// The web client in headless Chromium against a running stack
// (FANOUT_BROWSER_BASE, started by scripts/browser-test.sh): two people
// sign up in two browser contexts, one follows the other, the other posts,
// and the post appears in the follower's open page without a reload; a
// like's count updates; a reload resumes the stream without duplicates.
// No console errors. Screenshots go to ./artifacts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const base = process.env.FANOUT_BROWSER_BASE ?? 'http://127.0.0.1:28095';
const artifacts = new URL('./artifacts/', import.meta.url).pathname;
// How long eventual consistency may take before the test fails; the
// measured post → screen latency is reported, and far below this.
const DEADLINE_MS = 15_000;
// Posts whose latency is measured.
const MEASURED = Number(process.env.FANOUT_BROWSER_POSTS ?? 10);

mkdirSync(artifacts, { recursive: true });

async function person(browser, handle, errors) {
  const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`${handle}: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`${handle}: ${error.message}`));
  await page.goto(base + '/');
  await page.getByLabel('Handle', { exact: true }).fill(handle);
  await page.getByLabel('Password').fill('correct horse battery');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByText('Live', { exact: true }).waitFor({ timeout: DEADLINE_MS });
  return { context, page };
}

async function post(page, text) {
  await page.getByLabel('What is happening?').fill(text);
  await page.getByRole('button', { name: 'Post' }).click();
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

test('a post appears live in a follower\'s page, likes count, and a reload resumes', async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  const errors = [];
  try {
    const suffix = Date.now().toString(36);
    const alice = await person(browser, `alice_${suffix}`, errors);
    const bob = await person(browser, `bob_${suffix}`, errors);

    // Bob follows alice with the keyboard alone.
    await bob.page.getByLabel('Their handle').focus();
    await bob.page.keyboard.type(`alice_${suffix}`);
    await bob.page.keyboard.press('Enter');
    await bob.page.getByText(/following @alice_/).waitFor({ timeout: DEADLINE_MS });

    // Alice posts; each post appears in bob's open page, no reload.
    const latencies = [];
    for (let i = 0; i < MEASURED; i += 1) {
      const text = `live post ${i} from alice ${suffix}`;
      const started = Date.now();
      await post(alice.page, text);
      await bob.page.getByText(text).waitFor({ timeout: DEADLINE_MS });
      latencies.push(Date.now() - started);
    }
    latencies.sort((a, b) => a - b);
    const measured = {
      posts: latencies.length,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      max_ms: latencies[latencies.length - 1],
    };
    writeFileSync(artifacts + 'latency.json', JSON.stringify(measured, null, 2) + '\n');
    console.log(`post → screen latency: ${JSON.stringify(measured)}`);
    assert.ok(measured.max_ms < DEADLINE_MS);

    // The freshness indicator says how far fan-out has caught up.
    await bob.page.locator('#freshness').filter({ hasText: /Fan-out/ }).waitFor({ timeout: DEADLINE_MS });

    // A like's count updates.
    const newest = bob.page.locator('#feed li').first();
    const like = newest.getByRole('button', { name: /^Like/ });
    await like.click();
    await assert.doesNotReject(like.filter({ hasText: 'Like (1)' }).waitFor({ timeout: DEADLINE_MS }));
    assert.equal(await like.getAttribute('aria-pressed'), 'true');
    await bob.page.screenshot({ path: artifacts + 'bob-live-feed.png', fullPage: true });
    // The one docs/web-client.png shows: the top of bob's page.
    await bob.page.locator('#feed-title').scrollIntoViewIfNeeded();
    await bob.page.screenshot({ path: artifacts + 'web-client.png' });
    await alice.page.screenshot({ path: artifacts + 'alice.png', fullPage: true });

    // Bob reloads; a post made meanwhile arrives; nothing shows twice.
    await bob.page.reload();
    await post(alice.page, `while bob reloaded ${suffix}`);
    await bob.page.getByText('Live', { exact: true }).waitFor({ timeout: DEADLINE_MS });
    await bob.page.getByText(`while bob reloaded ${suffix}`).waitFor({ timeout: DEADLINE_MS });
    await post(alice.page, `after the reload ${suffix}`);
    await bob.page.getByText(`after the reload ${suffix}`).waitFor({ timeout: DEADLINE_MS });
    const ids = await bob.page.locator('#feed li').evaluateAll((items) => items.map((li) => li.id));
    assert.equal(new Set(ids).size, ids.length, 'no post shows twice');
    assert.equal(ids.length, MEASURED + 2, 'every post of alice shows once');
    const likes = await bob.page.locator('#feed li').first().getByRole('button', { name: /^Like/ }).textContent();
    assert.equal(likes, 'Like (0)');
    await bob.page.screenshot({ path: artifacts + 'bob-after-reload.png', fullPage: true });

    assert.deepEqual(errors, [], 'no console errors');
  } finally {
    await browser.close();
  }
});
