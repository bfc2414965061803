// Browser tests of centralino's pages (the widget on the demo shop, the agent console, the
// wallboard) in Debian's headless Chromium, driven by playwright-core (no browser download).
//
//   node scripts/browser/test.mjs --base http://127.0.0.1:PORT [--offline-base URL]
//        [--screenshots DIR] [--chromium /usr/bin/chromium] [--reopens-at-unix-ms MS]
//
// Settings also come from the environment: CENTRALINO_BROWSER_BASE,
// CENTRALINO_BROWSER_OFFLINE_BASE, CENTRALINO_BROWSER_SCREENSHOTS, CENTRALINO_BROWSER_CHROMIUM,
// CENTRALINO_BROWSER_REOPENS_AT_UNIX_MS, CENTRALINO_BROWSER_OPERATOR_TOKEN (default
// "demo-operator-token"), CENTRALINO_BROWSER_TIMEOUT_MS (one wait, default 15000),
// CENTRALINO_BROWSER_ONLY (test names to run, separated by '|', for debugging).
//
// `--base` is a standalone dev-mode node with the example configuration whose clock reads a
// time the Italian team is open, with no agent logged in; `--offline-base` a node out of
// hours for every team (scripts/browser/offline.toml). The flows run in order and build on
// each other (one conversation goes from the pre-chat form to the rating); a flow whose
// predecessor failed fails at once naming it. Prints "N passed, N failed" and exits non-zero
// on any failure. Screenshots of each state go to the screenshots folder.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string', default: process.env.CENTRALINO_BROWSER_BASE || '' },
    'offline-base': { type: 'string', default: process.env.CENTRALINO_BROWSER_OFFLINE_BASE || '' },
    screenshots: { type: 'string', default: process.env.CENTRALINO_BROWSER_SCREENSHOTS || 'target/screenshots' },
    chromium: { type: 'string', default: process.env.CENTRALINO_BROWSER_CHROMIUM || '/usr/bin/chromium' },
    'reopens-at-unix-ms': { type: 'string', default: process.env.CENTRALINO_BROWSER_REOPENS_AT_UNIX_MS || '' },
    'operator-token': { type: 'string', default: process.env.CENTRALINO_BROWSER_OPERATOR_TOKEN || 'demo-operator-token' },
    timeout: { type: 'string', default: process.env.CENTRALINO_BROWSER_TIMEOUT_MS || '15000' },
    only: { type: 'string', default: process.env.CENTRALINO_BROWSER_ONLY || '' },
  },
});

if (!opts.base) {
  console.error('usage: node test.mjs --base http://127.0.0.1:PORT [--offline-base URL] [--screenshots DIR]');
  process.exit(2);
}
const BASE = opts.base.replace(/\/$/, '');
const OFFLINE_BASE = opts['offline-base'].replace(/\/$/, '');
const SHOTS = opts.screenshots;
const TIMEOUT = Number(opts.timeout);
const OPERATOR_TOKEN = opts['operator-token'];
const ONLY = new Set(opts.only.split('|').map((s) => s.trim()).filter(Boolean));
mkdirSync(SHOTS, { recursive: true });

// The example configuration's agents (dev mode: the documented demo passwords).
const AGENT1 = { id: 'giulia', name: 'Giulia Rossi', password: 'giulia-pw' };
const AGENT2 = { id: 'francesca', name: 'Francesca Romano', password: 'francesca-pw' };
const CUSTOMER = { name: 'Anna Verdi', email: 'anna.verdi@example.com', question: 'Buongiorno, il mio ordine 1042 non è ancora arrivato.' };

const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// ---------- the runner ----------

const tests = [];
/** A named flow; `after` names the flows it builds on. */
function test(name, after, fn) {
  tests.push({ name, after, fn });
}

const ctx = {}; // pages and what the flows learn (conversation id, ...)
const browserLog = [];

async function screenshot(page, name) {
  if (!page || page.isClosed()) return;
  try {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
  } catch (err) {
    console.error(`  (screenshot ${name} failed: ${err.message})`);
  }
}

async function run() {
  const browser = await chromium.launch({ executablePath: opts.chromium, args: ARGS, headless: true });
  ctx.browser = browser;
  const results = new Map();
  let passed = 0;
  let failed = 0;
  try {
    for (const t of tests) {
      if (ONLY.size && !ONLY.has(t.name)) continue;
      const broken = t.after.filter((dep) => results.get(dep) !== 'pass');
      const started = Date.now();
      if (broken.length) {
        results.set(t.name, 'fail');
        failed += 1;
        console.log(`not ok - ${t.name}: not run, it builds on ${broken.map((b) => `"${b}"`).join(', ')} which did not pass`);
        continue;
      }
      try {
        await t.fn();
        results.set(t.name, 'pass');
        passed += 1;
        console.log(`ok - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
      } catch (err) {
        results.set(t.name, 'fail');
        failed += 1;
        console.log(`not ok - ${t.name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
        console.log(indent(err && err.stack ? err.stack : String(err)));
        const slug = t.name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
        for (const [label, page] of Object.entries(ctx.pages || {})) await screenshot(page, `failed-${slug}-${label}`);
      }
    }
  } finally {
    await browser.close().catch(() => {});
  }
  if (failed && browserLog.length) {
    console.log('browser console errors and failed requests:');
    console.log(indent(browserLog.slice(-60).join('\n')));
  }
  console.log(`\nscreenshots in ${SHOTS}`);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed || passed === 0 ? 1 : 0;
}

function indent(text) {
  return String(text)
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

// ---------- helpers ----------

async function newPage(label, options = {}) {
  const context = await ctx.browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'it-IT', timezoneId: 'Europe/Rome', ...options });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on('pageerror', (err) => browserLog.push(`[${label}] page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') browserLog.push(`[${label}] console: ${msg.text()}`);
  });
  page.on('response', (res) => {
    if (res.status() >= 400) browserLog.push(`[${label}] ${res.request().method()} ${res.url()} -> ${res.status()}`);
  });
  ctx.pages = ctx.pages || {};
  ctx.pages[label] = page;
  return page;
}

/** Polls `probe` until it returns a truthy value; fails with `what` and the last value. */
async function eventually(what, probe, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? ` (last error: ${lastErr.message})` : ` (last value: ${JSON.stringify(last)})`;
      throw new assert.AssertionError({ message: `${what}: not within ${timeout} ms${detail}` });
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function visible(locator, what, timeout = TIMEOUT) {
  try {
    await locator.first().waitFor({ state: 'visible', timeout });
  } catch {
    throw new assert.AssertionError({ message: `${what}: not visible within ${timeout} ms` });
  }
}

async function hidden(locator, what, timeout = TIMEOUT) {
  try {
    await locator.first().waitFor({ state: 'hidden', timeout });
  } catch {
    throw new assert.AssertionError({ message: `${what}: still visible after ${timeout} ms` });
  }
}

/** The texts of the message elements matching `selector`, in order. */
async function texts(page, selector) {
  return page.locator(selector).allInnerTexts();
}

/** Asserts every text of `expected` is shown exactly once among `selector`'s elements. */
async function exactlyOnce(page, selector, expected, where) {
  await eventually(`${where}: every message shown exactly once`, async () => {
    const shown = await texts(page, selector);
    return expected.every((text) => shown.filter((s) => s.trim() === text).length === 1);
  }).catch(async (err) => {
    const shown = await texts(page, selector);
    const counts = expected.map((text) => `${shown.filter((s) => s.trim() === text).length}× ${JSON.stringify(text)}`);
    err.message += `\n  counts: ${counts.join('; ')}\n  shown: ${JSON.stringify(shown)}`;
    throw err;
  });
}

/** Asserts `selector` matches exactly `expected.length` elements (the texts in the message). */
async function countIs(page, selector, expected, where) {
  const shown = await texts(page, selector);
  assert.equal(shown.length, expected.length,
    `${where}: ${expected.length} message elements expected, ${shown.length} shown\n  expected: ${JSON.stringify(expected)}\n  shown: ${JSON.stringify(shown)}`);
}

async function api(path, body, token, base = BASE) {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body || {}),
  });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { raw: text };
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${text}`);
  return data;
}

const widget = (page, testid) => page.getByTestId(testid);
// The customer's and agents' messages (system messages, such as the transfer's, apart).
const customerMsgs = '[data-testid="cw-msg"]:not([data-sender="system"]) [data-testid="cw-msg-text"]';
const widgetSystemMsgs = '[data-testid="cw-msg"][data-sender="system"] [data-testid="cw-msg-text"]';

/** The support queue's depth on the wallboard (0 when the row is absent). */
async function wallDepth(page, department) {
  const rows = page.locator(`[data-testid="queue-row"][data-department="${department}"] [data-testid="queue-depth"]`);
  const values = await rows.allInnerTexts();
  return values.reduce((n, v) => n + Number(v.trim() || 0), 0);
}

/** A cell of the wallboard's "today by department and language" row ('' when absent). */
async function serviceCell(page, department, language, testid) {
  const cell = page.locator(`[data-testid="service-row"][data-department="${department}"][data-language="${language}"] [data-testid="${testid}"]`);
  return (await cell.count()) ? (await cell.first().innerText()).trim() : '';
}

/** Logs an agent in on /console and sets them available. */
async function consoleLogin(page, agent, { available = true } = {}) {
  await page.goto(`${BASE}/console`);
  await visible(page.getByTestId('login-form'), 'console login form');
  await page.getByTestId('login-agent').fill(agent.id);
  await page.getByTestId('login-password').fill(agent.password);
  await page.getByTestId('login-submit').click();
  await visible(page.getByTestId('agent-name'), `console: ${agent.id} logged in (agent name in the top bar)`);
  const loginError = page.getByTestId('login-error');
  if (await loginError.isVisible()) throw new Error(`login of ${agent.id} refused: ${await loginError.innerText()}`);
  await eventually(`console: the top bar names ${agent.name}`, async () => (await page.getByTestId('agent-name').innerText()).includes(agent.name));
  await eventually('console: the event stream is open', async () => (await page.getByTestId('connection').getAttribute('data-state')) === 'open');
  if (available) {
    await page.getByTestId('status').selectOption('AGENT_STATUS_AVAILABLE');
    await eventually(`console: ${agent.id}'s status is available (acknowledged)`, async () =>
      (await page.getByTestId('status').getAttribute('data-current')) === 'AGENT_STATUS_AVAILABLE');
  }
}

/** Types like a person (input events per key), so the typing indicator starts. */
async function typeSlowly(locator, text) {
  await locator.click();
  await locator.pressSequentially(text, { delay: 40 });
}

// ---------- the flows ----------

const T = {
  wallboard: 'wallboard: connects with the operator token',
  prechat: 'customer: opens the widget on /, fills the pre-chat form, starts, sees the queue position',
  wallUp: 'wallboard: the queue depth goes up while the customer waits',
  offer: 'agent: logs in on /console, sets available, sees the offer with its countdown, accepts',
  wallDown: 'wallboard: the queue depth goes down once the customer is assigned',
  messages: 'chat: messages both ways',
  typingToAgent: 'typing: the customer types, the console shows the customer typing',
  typingToCustomer: 'typing: the agent types, the widget shows the agent typing',
  reload: 'customer reloads mid-chat: every message shown once, nothing lost, messages flow both ways',
  transfer: 'agent: warm transfer to a second agent, who accepts; their messages reach the customer',
  consoleReload: 'agent reloads the console mid-chat: the session resumes, every message once, messages flow both ways',
  close: 'agent closes with a wrap-up summary; the customer sees the end and rates',
  offline: 'customer out of hours: the offline form with the reopening time, submitted',
  checkout: 'customer on /checkout: the page rule routes the chat to sales',
  phone: 'phone (375×667): the widget panel fits the viewport, the input is reachable',
};

test(T.wallboard, [], async () => {
  const wall = await newPage('wallboard', { locale: 'en-GB' });
  ctx.wall = wall;
  await wall.goto(`${BASE}/wallboard`);
  await wall.getByTestId('wall-token').fill(OPERATOR_TOKEN);
  await wall.getByTestId('wall-connect').click();
  await eventually('wallboard: the snapshot stream is open (wall-connection data-state="open")', async () =>
    (await wall.getByTestId('wall-connection').getAttribute('data-state')) === 'open');
  await visible(wall.locator('[data-testid="queue-row"][data-department="support"]'), 'wallboard: the support queue row from the first snapshot');
  await visible(wall.locator('[data-testid="agent-row"][data-agent-id="giulia"]'), "wallboard: giulia's row among the agents");
  const errorBox = wall.getByTestId('wall-error');
  assert.equal(await errorBox.isVisible(), false, `wallboard shows an error: ${await errorBox.innerText().catch(() => '')}`);
  ctx.depthBefore = await wallDepth(wall, 'support');
  assert.equal(ctx.depthBefore, 0, 'the support queue is empty before the customer comes');
  await screenshot(wall, 'wallboard-empty');
});

test(T.prechat, [], async () => {
  const page = await newPage('customer');
  ctx.customer = page;
  await page.goto(`${BASE}/`);
  await visible(page.getByRole('heading', { name: 'Le cose belle fatte a mano' }), 'the demo shop Bottega Digitale');
  const launcher = widget(page, 'cw-launcher');
  await visible(launcher, 'widget launcher (cw-launcher)');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false', 'the widget starts closed');
  await screenshot(page, 'shop');
  await launcher.click();
  await visible(widget(page, 'cw-panel'), 'widget panel (cw-panel) after clicking the launcher');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'true', 'launcher aria-expanded after opening');
  await visible(widget(page, 'cw-prechat'), 'pre-chat form');
  await widget(page, 'cw-name').fill(CUSTOMER.name);
  await widget(page, 'cw-email').fill(CUSTOMER.email);
  await widget(page, 'cw-department').selectOption('support');
  await widget(page, 'cw-question').fill(CUSTOMER.question);
  await screenshot(page, 'widget-prechat');
  await widget(page, 'cw-start').click();
  const error = widget(page, 'cw-prechat-error');
  await eventually('widget: the queue box (cw-queue) shown after start', async () => {
    if (await error.isVisible()) throw new Error(`pre-chat error: ${await error.innerText()}`);
    return widget(page, 'cw-queue').isVisible();
  });
  await eventually('widget: the queue position reads "posizione 1"', async () => /posizione 1\b/.test(await widget(page, 'cw-queue-position').innerText()));
  // The question went out as the first message and reached the node (a seq is known).
  await exactlyOnce(page, customerMsgs, [CUSTOMER.question], 'widget while queued');
  await eventually('widget: the question is sent (data-state sent or delivered)', async () =>
    ['sent', 'delivered'].includes(await page.locator('[data-testid="cw-msg"][data-sender="customer"]').first().getAttribute('data-state')));
  await screenshot(page, 'widget-queue');
});

test(T.wallUp, [T.wallboard, T.prechat], async () => {
  await eventually('wallboard: support queue depth 1', async () => (await wallDepth(ctx.wall, 'support')) === 1);
  await eventually('wallboard: today by department and language, support/it waiting 1 (service-waiting)', async () =>
    (await serviceCell(ctx.wall, 'support', 'it', 'service-waiting')) === '1');
  await screenshot(ctx.wall, 'wallboard-queued');
});

test(T.offer, [T.prechat], async () => {
  const agent = await newPage('agent1');
  ctx.agent1 = agent;
  await consoleLogin(agent, AGENT1);
  const offer = agent.getByTestId('offer');
  await visible(offer, 'console: an offer (data-testid="offer") after setting available', 20000);
  assert.equal((await agent.getByTestId('offer-customer').first().innerText()).trim(), CUSTOMER.name, 'the offer names the customer');
  assert.equal((await agent.getByTestId('offer-count').innerText()).trim(), '1', 'offer count');
  const countdown = agent.getByTestId('offer-countdown').first();
  const seconds = async () => {
    const m = /(\d+)\s*s/.exec(await countdown.innerText());
    return m ? Number(m[1]) : NaN;
  };
  const first = await eventually('console: the offer countdown shows seconds', seconds);
  assert.ok(first > 0 && first <= 30, `countdown starts within the offer timeout (30 s), got ${first}`);
  await eventually(`console: the countdown goes down from ${first}`, async () => (await seconds()) < first, 4000);
  const visitor = await agent.getByTestId('offer-visitor').first().innerText();
  assert.match(visitor, /\//, `the offer shows the visitor's pages (offer-visitor): ${JSON.stringify(visitor)}`);
  ctx.conversationId = await offer.first().getAttribute('data-conversation-id');
  assert.ok(ctx.conversationId, 'the offer carries data-conversation-id');
  await screenshot(agent, 'console-offer');
  await agent.getByTestId('offer-accept').first().click();
  const chat = agent.locator(`[data-testid="chat"][data-conversation-id="${ctx.conversationId}"]`);
  await visible(chat, 'console: the chat panel of the accepted conversation');
  await hidden(offer, 'console: the offer after accepting');
  await exactlyOnce(agent, `[data-testid="chat"][data-conversation-id="${ctx.conversationId}"] [data-testid="chat-msg-text"]`, [CUSTOMER.question], 'console after accept (the question in the transcript)');
  // The customer sees the agent.
  const customer = ctx.customer;
  await eventually(`widget: the header names ${AGENT1.name}`, async () => (await widget(customer, 'cw-agent-name').innerText()).includes(AGENT1.name));
  await hidden(widget(customer, 'cw-queue'), 'widget: the queue box after assignment');
});

test(T.wallDown, [T.wallUp, T.offer], async () => {
  await eventually('wallboard: support queue depth back to 0', async () => (await wallDepth(ctx.wall, 'support')) === 0);
  await eventually('wallboard: today by department and language, support/it waiting 0 and answered 1', async () =>
    (await serviceCell(ctx.wall, 'support', 'it', 'service-waiting')) === '0' &&
    (await serviceCell(ctx.wall, 'support', 'it', 'service-answered')) === '1');
  const status = ctx.wall.locator(`[data-testid="agent-row"][data-agent-id="${AGENT1.id}"] [data-testid="agent-status"]`);
  await eventually(`wallboard: ${AGENT1.id} shown available (agent-status data-status)`, async () =>
    (await status.getAttribute('data-status')) === 'AGENT_STATUS_AVAILABLE');
  const load = ctx.wall.locator(`[data-testid="agent-row"][data-agent-id="${AGENT1.id}"] [data-testid="agent-load"]`);
  await eventually(`wallboard: ${AGENT1.id} holds one chat (agent-load 1/5)`, async () => /^1\s*\/\s*5$/.test((await load.innerText()).trim()));
  await screenshot(ctx.wall, 'wallboard');
});

const chatMsgs = () => `[data-testid="chat"][data-conversation-id="${ctx.conversationId}"] [data-testid="chat-msg"]:not([data-sender="system"]) [data-testid="chat-msg-text"]`;
const chatSystemMsgs = () => `[data-testid="chat"][data-conversation-id="${ctx.conversationId}"] [data-testid="chat-msg"][data-sender="system"] [data-testid="chat-msg-text"]`;
ctx.system = []; // the system messages of the conversation
const chatOf = (page) => page.locator(`[data-testid="chat"][data-conversation-id="${ctx.conversationId}"]`);
ctx.sent = [CUSTOMER.question]; // every message of the conversation, in order

async function customerSends(text, { typed = false } = {}) {
  const input = widget(ctx.customer, 'cw-input');
  if (typed) await typeSlowly(input, text);
  else await input.fill(text);
  await input.press('Enter');
  ctx.sent.push(text);
}

async function agentSends(page, text) {
  const input = chatOf(page).getByTestId('chat-input');
  await input.fill(text);
  await input.press('Enter');
  ctx.sent.push(text);
}

test(T.messages, [T.offer], async () => {
  const customer = ctx.customer;
  const agent = ctx.agent1;
  const fromCustomer = 'Avete già spedito il pacco?';
  await customerSends(fromCustomer);
  await exactlyOnce(agent, chatMsgs(), [CUSTOMER.question, fromCustomer], 'console');
  await eventually('widget: the customer message reaches data-state "delivered"', async () =>
    (await customer.locator('[data-testid="cw-msg"][data-sender="customer"]').last().getAttribute('data-state')) === 'delivered');
  const fromAgent = 'Buongiorno Anna, controllo subito il suo ordine.';
  await agentSends(agent, fromAgent);
  await exactlyOnce(customer, customerMsgs, [CUSTOMER.question, fromCustomer, fromAgent], 'widget');
  const agentMsg = customer.locator('[data-testid="cw-msg"][data-sender="agent"]').last();
  assert.equal((await agentMsg.getByTestId('cw-msg-text').innerText()).trim(), fromAgent, "the agent's message is marked data-sender=agent");
  await exactlyOnce(agent, chatMsgs(), [CUSTOMER.question, fromCustomer, fromAgent], 'console');
  await screenshot(customer, 'widget');
  await screenshot(agent, 'console');
});

test(T.typingToAgent, [T.messages], async () => {
  const customer = ctx.customer;
  const indicator = chatOf(ctx.agent1).getByTestId('chat-typing');
  assert.equal(await indicator.isVisible(), false, 'no customer typing indicator before typing');
  const input = widget(customer, 'cw-input');
  // Typing for longer than the widget's 2 s throttle: right after a message (typing true,
  // then false on send) the node's typing limit (a burst of 2, then 2 a second) may drop
  // the next "typing: true", which the widget only repeats 2 s later.
  await typeSlowly(input, 'Sto cercando il numero dell’ordine nella email di conferma, un attimo solo…');
  await visible(indicator, 'console: the customer typing indicator (chat-typing) while the customer types', 8000);
  await screenshot(ctx.agent1, 'console-customer-typing');
  await input.fill('');
  await customerSends('Il numero è 1042.');
  await exactlyOnce(ctx.agent1, chatMsgs(), ctx.sent, 'console');
  await hidden(indicator, 'console: the typing indicator after the message arrived', 10000);
});

test(T.typingToCustomer, [T.messages], async () => {
  const customer = ctx.customer;
  const indicator = widget(customer, 'cw-typing');
  const input = chatOf(ctx.agent1).getByTestId('chat-input');
  await typeSlowly(input, 'Un attimo, verifico lo stato della spedizione con il corriere e le scrivo.');
  await visible(indicator, 'widget: the agent typing indicator (cw-typing) while the agent types', 8000);
  assert.match(await indicator.innerText(), /sta scrivendo/, 'the widget says the agent is typing');
  await screenshot(customer, 'widget-agent-typing');
  await input.fill('');
  await agentSends(ctx.agent1, 'Il pacco è partito ieri.');
  await exactlyOnce(customer, customerMsgs, ctx.sent, 'widget');
  await hidden(indicator, "widget: the typing indicator after the agent's message", 10000);
});

test(T.reload, [T.messages], async () => {
  const customer = ctx.customer;
  const agent = ctx.agent1;
  await exactlyOnce(customer, customerMsgs, ctx.sent, 'widget before the reload');
  // A message sent right before the reload (maybe not answered yet: kept as pending and
  // re-sent with the same id), and one from the agent while the page reloads.
  const beforeReload = 'Scrivo e ricarico la pagina.';
  await widget(customer, 'cw-input').fill(beforeReload);
  await widget(customer, 'cw-input').press('Enter');
  ctx.sent.push(beforeReload);
  const reloading = customer.reload({ waitUntil: 'load' });
  const duringReload = 'Messaggio mentre il cliente ricarica.';
  await agentSends(agent, duringReload);
  await reloading;
  await visible(widget(customer, 'cw-panel'), 'widget: the panel is open again after the reload');
  await exactlyOnce(customer, customerMsgs, ctx.sent, 'widget after the reload');
  // Let the resumed stream replay whatever it replays, then count again.
  await new Promise((r) => setTimeout(r, 2500));
  await exactlyOnce(customer, customerMsgs, ctx.sent, 'widget 2.5 s after the reload');
  await exactlyOnce(agent, chatMsgs(), ctx.sent, 'console after the customer reloaded');
  await countIs(customer, customerMsgs, ctx.sent, 'widget after the reload');
  // And it goes on both ways.
  await customerSends('Dopo il reload funziona ancora?');
  await exactlyOnce(agent, chatMsgs(), ctx.sent, 'console after a message sent after the reload');
  await agentSends(agent, 'Sì, la vedo benissimo.');
  await exactlyOnce(customer, customerMsgs, ctx.sent, 'widget after the reply following the reload');
  await countIs(customer, customerMsgs, ctx.sent, 'widget after the reload and the replies');
  await countIs(agent, chatMsgs(), ctx.sent, 'console after the customer reloaded and the replies');
  await screenshot(customer, 'widget-after-reload');
});

test(T.transfer, [T.offer], async () => {
  const agent1 = ctx.agent1;
  const agent2 = await newPage('agent2');
  ctx.agent2 = agent2;
  await consoleLogin(agent2, AGENT2);
  await chatOf(agent1).getByTestId('chat-transfer').click();
  const dialog = agent1.getByTestId('transfer-dialog');
  await visible(dialog, 'console: the transfer dialog');
  await agent1.getByTestId('transfer-kind').selectOption('agentId');
  await agent1.getByTestId('transfer-target').fill(AGENT2.id);
  await agent1.getByTestId('transfer-reason').fill('Serve una collega della logistica');
  assert.equal(await agent1.getByTestId('transfer-warm').isChecked(), true, 'warm transfer is the default');
  await screenshot(agent1, 'console-transfer');
  await agent1.getByTestId('transfer-submit').click();
  await eventually('console: the transfer dialog closes (the transfer was acknowledged)', async () => {
    const err = agent1.getByTestId('transfer-error');
    if (await err.isVisible()) throw new Error(`transfer refused: ${await err.innerText()}`);
    return !(await dialog.isVisible());
  });
  const offer = agent2.locator(`[data-testid="offer"][data-conversation-id="${ctx.conversationId}"]`);
  await visible(offer, `console (${AGENT2.id}): the transfer offer`, 20000);
  await visible(offer.getByTestId('flag-transfer'), `console (${AGENT2.id}): the offer is flagged as a transfer`);
  await screenshot(agent2, 'console-transfer-offer');
  await offer.getByTestId('offer-accept').click();
  await visible(chatOf(agent2), `console (${AGENT2.id}): the transferred chat`);
  // The second agent gets the transcript so far.
  await exactlyOnce(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) transcript`);
  await countIs(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) transcript`);
  // The node's system message about the transfer, once on both sides.
  const system = await eventually('widget: a system message about the transfer names the second agent', async () =>
    (await texts(ctx.customer, widgetSystemMsgs)).find((t) => t.includes(AGENT2.name)));
  ctx.system.push(system.trim());
  await exactlyOnce(ctx.customer, widgetSystemMsgs, ctx.system, 'widget system messages');
  await exactlyOnce(agent2, chatSystemMsgs(), ctx.system, `console (${AGENT2.id}) system messages`);
  const fromAgent2 = 'Buongiorno, sono Francesca della logistica: ci penso io.';
  await agentSends(agent2, fromAgent2);
  await exactlyOnce(ctx.customer, customerMsgs, ctx.sent, "widget after the second agent's message");
  await eventually(`widget: the header names ${AGENT2.name}`, async () => (await widget(ctx.customer, 'cw-agent-name').innerText()).includes(AGENT2.name));
  await eventually('widget: the transfer notice (cw-notice "Ti stiamo trasferendo")', async () =>
    (await ctx.customer.getByTestId('cw-notice').allInnerTexts()).some((t) => /trasferendo/.test(t)));
  await visible(chatOf(agent1).getByTestId('chat-ended'), `console (${AGENT1.id}): the chat ends for the first agent once transferred`);
  assert.match(await chatOf(agent1).getByTestId('chat-ended').innerText(), /trasferita/, `console (${AGENT1.id}): the outcome reads "trasferita"`);
  await screenshot(agent1, 'console-after-transfer');
  await customerSends('Grazie Francesca!');
  await exactlyOnce(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) after the customer's reply`);
  await screenshot(agent2, 'console-agent2');
  await screenshot(ctx.customer, 'widget-transferred');
});

test(T.consoleReload, [T.transfer], async () => {
  const agent2 = ctx.agent2;
  await agent2.reload({ waitUntil: 'load' });
  await visible(chatOf(agent2), `console (${AGENT2.id}): the chat panel after the reload`);
  assert.equal(await agent2.getByTestId('login-form').isVisible(), false, 'the console stays logged in after a reload');
  await eventually('console: the event stream is open again', async () => (await agent2.getByTestId('connection').getAttribute('data-state')) === 'open');
  await exactlyOnce(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) after the reload`);
  await new Promise((r) => setTimeout(r, 2000));
  await exactlyOnce(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) 2 s after the reload`);
  await countIs(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) after the reload`);
  await countIs(agent2, chatSystemMsgs(), ctx.system, `console (${AGENT2.id}) system messages after the reload`);
  await customerSends('Ci siete ancora?');
  await exactlyOnce(agent2, chatMsgs(), ctx.sent, `console (${AGENT2.id}) after a customer message following the reload`);
  await agentSends(agent2, 'Sì, eccomi.');
  await exactlyOnce(ctx.customer, customerMsgs, ctx.sent, 'widget after the agent wrote from the reloaded console');
});

test(T.close, [T.transfer], async () => {
  const agent2 = ctx.agent2;
  const customer = ctx.customer;
  await chatOf(agent2).getByTestId('chat-close').click();
  await visible(agent2.getByTestId('close-dialog'), 'console: the close dialog');
  const summary = 'Ordine 1042 spedito ieri, tracciamento inviato alla cliente.';
  await agent2.getByTestId('close-summary').fill(summary);
  await agent2.getByTestId('close-submit').click();
  await eventually('console: the close dialog closes (the close was acknowledged)', async () => {
    const err = agent2.getByTestId('close-error');
    if (await err.isVisible()) throw new Error(`close refused: ${await err.innerText()}`);
    return !(await agent2.getByTestId('close-dialog').isVisible());
  });
  await visible(chatOf(agent2).getByTestId('chat-ended'), 'console: the chat shows it ended');
  await screenshot(agent2, 'console-closed');
  await visible(widget(customer, 'cw-closed'), 'widget: the end of the chat (cw-closed)');
  await hidden(widget(customer, 'cw-composer'), 'widget: the composer after the end');
  await visible(widget(customer, 'cw-rating'), 'widget: the rating form');
  await screenshot(customer, 'widget-rating');
  await widget(customer, 'cw-rate-good').click();
  assert.equal(await widget(customer, 'cw-rate-good').getAttribute('aria-pressed'), 'true', 'the good button is pressed');
  const comment = 'Gentilissime, grazie!';
  await widget(customer, 'cw-rating-comment').fill(comment);
  await widget(customer, 'cw-rating-send').click();
  await eventually('widget: the rating is thanked (cw-rating-done)', async () => {
    const err = widget(customer, 'cw-rating-error');
    if (await err.isVisible()) throw new Error(`rating refused: ${await err.innerText()}`);
    return widget(customer, 'cw-rating-done').isVisible();
  });
  await screenshot(customer, 'widget-rated');
  // The record has the summary and the rating.
  const transcript = await eventually('admin get-transcript has the summary and the rating', async () => {
    const t = await api('/v1/admin/get-transcript', { conversationId: ctx.conversationId }, OPERATOR_TOKEN);
    return t.summary === summary && t.conversation && t.conversation.ratingComment === comment ? t : null;
  });
  assert.ok(transcript.conversation.rating, 'the transcript carries a rating');
});

test(T.offline, [], async () => {
  assert.ok(OFFLINE_BASE, 'no --offline-base: the out-of-hours node is needed for this flow');
  const page = await newPage('offline');
  await page.goto(`${OFFLINE_BASE}/`);
  await widget(page, 'cw-launcher').click();
  await visible(widget(page, 'cw-prechat'), 'pre-chat form');
  await widget(page, 'cw-name').fill('Luisa Neri');
  await widget(page, 'cw-question').fill('Posso cambiare la taglia del mio ordine?');
  await widget(page, 'cw-start').click();
  await visible(widget(page, 'cw-offline'), 'widget: the offline form (cw-offline) out of hours');
  const reopens = widget(page, 'cw-offline-reopens');
  await visible(reopens, 'widget: the reopening time (cw-offline-reopens)');
  const at = Number(await reopens.getAttribute('data-reopens-at-unix-ms'));
  assert.ok(at > 0, 'data-reopens-at-unix-ms is set');
  if (opts['reopens-at-unix-ms']) {
    const expected = Number(opts['reopens-at-unix-ms']);
    assert.equal(at, expected, `reopens at ${new Date(expected).toISOString()}, the widget says ${new Date(at).toISOString()}`);
  }
  const text = await reopens.innerText();
  assert.match(text, /Riapriamo/, 'the reopening sentence');
  assert.match(text, /10[:.]00/, `the reopening time 10:00 in the text: ${JSON.stringify(text)}`);
  assert.equal(await widget(page, 'cw-composer').isVisible(), false, 'no composer out of hours');
  assert.equal(await widget(page, 'cw-offline-text').inputValue(), 'Posso cambiare la taglia del mio ordine?', 'the question is carried into the offline message');
  await screenshot(page, 'widget-offline');
  await widget(page, 'cw-offline-send').click();
  await visible(widget(page, 'cw-offline-error'), 'widget: asks for an email or phone when both are missing');
  await widget(page, 'cw-offline-email').fill('luisa.neri@example.com');
  await widget(page, 'cw-offline-send').click();
  await eventually('widget: the offline message is thanked (cw-offline-done)', async () => {
    const err = widget(page, 'cw-offline-error');
    if ((await err.isVisible()) && !/email|telefono/i.test(await err.innerText())) throw new Error(`offline message refused: ${await err.innerText()}`);
    return widget(page, 'cw-offline-done').isVisible();
  });
  await screenshot(page, 'widget-offline-sent');
  // The node recorded the conversation as an offline message.
  const conversationId = await page.evaluate(() => JSON.parse(sessionStorage.getItem('centralino.widget.v1') || '{}').conversationId);
  assert.ok(conversationId, 'the widget keeps the conversation id in session storage');
  await eventually('admin get-transcript: the conversation is recorded with the outcome CONVERSATION_OUTCOME_OFFLINE', async () => {
    const t = await api('/v1/admin/get-transcript', { conversationId }, OPERATOR_TOKEN, OFFLINE_BASE);
    return t.conversation && t.conversation.outcome === 'CONVERSATION_OUTCOME_OFFLINE';
  });
});

test(T.phone, [], async () => {
  const page = await newPage('phone', { viewport: { width: 375, height: 667 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await page.goto(`${BASE}/`);
  await widget(page, 'cw-launcher').tap();
  const panel = widget(page, 'cw-panel');
  await visible(panel, 'widget panel on the phone');
  // Inside the viewport once the panel's opening animation (160 ms) has run.
  const fits = async (locator, what) => {
    const eps = 1;
    let box = null;
    await eventually(`${what} inside the 375×667 viewport`, async () => {
      box = await locator.boundingBox();
      return box && box.x >= -eps && box.y >= -eps && box.x + box.width <= 375 + eps && box.y + box.height <= 667 + eps;
    }, 3000).catch((err) => {
      err.message += box ? `: x=${box.x} y=${box.y} w=${box.width} h=${box.height}` : ': no box';
      throw err;
    });
    return box;
  };
  const panelBox = await fits(panel, 'the widget panel');
  assert.ok(panelBox.width >= 374 && panelBox.height >= 666, `below 480 px the panel takes the whole screen, got ${panelBox.width}×${panelBox.height}`);
  await fits(widget(page, 'cw-name'), 'the name field');
  await fits(widget(page, 'cw-start'), 'the start button');
  await widget(page, 'cw-name').fill('Paolo Telefono');
  await widget(page, 'cw-start').tap();
  const input = widget(page, 'cw-input');
  await visible(input, 'widget: the composer input on the phone');
  await fits(panel, 'the widget panel with the chat');
  await fits(input, 'the composer input');
  await fits(widget(page, 'cw-send'), 'the send button');
  await input.tap();
  await input.fill('Scrivo dal telefono');
  await input.press('Enter');
  await exactlyOnce(page, customerMsgs, ['Scrivo dal telefono'], 'phone widget');
  await screenshot(page, 'widget-phone');
  // Leave nothing waiting behind.
  await widget(page, 'cw-end').tap();
  await widget(page, 'cw-confirm-yes').tap();
  await visible(widget(page, 'cw-closed'), 'widget: ended on the phone');
});

test(T.checkout, [], async () => {
  const page = await newPage('checkout');
  await page.goto(`${BASE}/`);
  await page.getByTestId('shop-checkout-link').click();
  await page.waitForURL(`${BASE}/checkout`);
  await widget(page, 'cw-launcher').click();
  await visible(widget(page, 'cw-prechat'), 'pre-chat form on /checkout');
  assert.equal(await widget(page, 'cw-department').inputValue(), 'support', 'the widget on /checkout asks for support (data-department)');
  await widget(page, 'cw-name').fill('Carla Cassa');
  await widget(page, 'cw-start').click();
  await visible(widget(page, 'cw-composer'), 'widget: the composer after start on /checkout');
  // The node's [[rules]] page_contains "/checkout" → sales, whatever the widget asked.
  const served = await eventually('widget: the node names the department it serves', async () =>
    page.evaluate(() => JSON.parse(sessionStorage.getItem('centralino.widget.v1') || '{}').servedDepartment));
  assert.equal(served, 'sales', 'the conversation started on /checkout is served by sales');
  await screenshot(page, 'widget-checkout');
  await widget(page, 'cw-end').click();
  await widget(page, 'cw-confirm-yes').click();
  await visible(widget(page, 'cw-closed'), 'widget: ended on /checkout');
});

await run();
