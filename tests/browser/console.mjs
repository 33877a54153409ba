// Drives Debian's Chromium through the operator console, for tests/console.rs. One step per
// run (the Rust test does what a member does between steps):
//   redrive  as an operator at phone width: the dead letter DEAD_ID of RECIPIENT is listed
//            with REASON, is redriven through the confirmation dialog, and leaves the list;
//   trace    as an operator at desktop width: the trace of DEAD_ID shows RECIPIENT's delivery
//            acked and the redrive among the audit records (SCREENSHOT: a PNG of the page);
//   refused  as a member who is not an operator: 403, naming why;
//   look     as an operator: waits for a minute of chart and writes SCREENSHOT (for the
//            README's picture; not a test).
// The browser authenticates with P12 (from `simpul certs export --p12`), password P12_PASSWORD.
// Every step fails on a script error in the page or on a request to any other origin.
import { chromium } from 'playwright-core';

const env = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set`);
  return process.env[k];
};
const step = process.argv[2];
const base = env('SIMPUL_URL');
const phone = step === 'redrive';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const problems = [];
try {
  const context = await browser.newContext({
    // The bus's server certificate is from the bus's own development CA, which this
    // Chromium does not trust; the client certificate is what is under test.
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin: base, pfxPath: env('P12'), passphrase: env('P12_PASSWORD') }],
    viewport: phone ? { width: 390, height: 844 } : { width: 1280, height: 900 },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith(base)) problems.push(`request elsewhere: ${r.url()}`); });
  const fits = async () => {
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    if (scroll > inner) problems.push(`the page is ${scroll} px wide in a ${inner} px window`);
  };

  if (step === 'refused') {
    const r = await page.goto(`${base}/console`);
    const text = await r.text();
    if (r.status() !== 403) problems.push(`a non-operator got ${r.status()}`);
    if (!text.includes('not an operator')) problems.push(`the refusal does not say why: ${text}`);
    if (/<script/i.test(text)) problems.push('the refusal carries the console');
  } else {
    const r = await page.goto(step === 'trace' ? `${base}/console#trace=${process.env.DEAD_ID}` : `${base}/console`);
    if (r.status() !== 200) throw new Error(`the console answered ${r.status()}: ${await r.text()}`);
    await page.locator('#status', { hasText: 'live' }).waitFor();
    const recipient = process.env.RECIPIENT;
    const id = process.env.DEAD_ID;
    if (step === 'redrive') {
      await page.locator(`#members-table tr[data-member="${recipient}"]`).waitFor();
      await page.locator(`#dead-recipient option[value="${recipient}"]`).waitFor({ state: 'attached' });
      await page.selectOption('#dead-recipient', recipient);
      const row = page.locator(`#dead-table tr[data-id="${id}"]`);
      await row.waitFor();
      const reason = await row.locator('.reason').textContent();
      if (!reason.includes(env('REASON'))) problems.push(`the dead letter's reason is ${reason}`);
      await fits();
      await row.locator('button.redrive').click();
      await page.locator('#confirm[open]').waitFor();
      const asked = await page.locator('#confirm-text').textContent();
      if (!asked.includes(id)) problems.push(`the confirmation does not name the message: ${asked}`);
      await page.click('#confirm-ok');
      await page.locator('#dead-result', { hasText: 'Redriven 1' }).waitFor();
      await row.waitFor({ state: 'detached' });
    } else if (step === 'trace') {
      await page.locator(`#members-table tr[data-member="${recipient}"]`).waitFor();
      const delivery = page.locator(`#trace-out .delivery[data-recipient="${recipient}"] .state`);
      await delivery.filter({ hasText: 'acked' }).waitFor();
      await page.locator('#trace-out li[data-action="redrive"]').waitFor();
      await fits();
      if (process.env.SCREENSHOT) {
        await page.evaluate(() => window.scrollTo(0, 0));
        await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
      }
    } else if (step === 'look') {
      await page.waitForFunction(() => document.querySelector('#chart-accepted polyline')
        ?.getAttribute('points').split(' ').length >= 30, null, { timeout: 90000 });
      await page.screenshot({ path: env('SCREENSHOT'), fullPage: true });
    } else {
      throw new Error(`unknown step ${step}`);
    }
  }
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`${step}: ok`);
