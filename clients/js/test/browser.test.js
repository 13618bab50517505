// The browser client in real Chromium, against a local gateway started here.
// Run by scripts/test.sh; on its own: LWS_GATEWAY_BIN=../../target/debug/lambda-ws node --test test/

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const gatewayBin = process.env.LWS_GATEWAY_BIN ?? join(root, 'target', 'debug', 'lambda-ws');

let gateway;
let base;
let port;
let browser;

/** Starts `lambda-ws dev` on a free port with these extra variables and arguments: { process, base }. */
async function startGateway(env = {}, args = []) {
  const child = spawn(gatewayBin, ['dev', '--port', '0', '--template', join(root, 'template.yaml'), ...args], {
    cwd: root,
    env: {
      ...process.env,
      RUST_LOG: 'warn',
      LWS_RATE_CONNECT_PER_IP: '0',
      LWS_RATE_CONNECT_PER_USER: '0',
      LWS_RATE_TOKENS_PER_USER: '0',
      LWS_CHANNEL_RULES: 'secret=none; *=all',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/Demo page\s+(http:\/\/127\.0\.0\.1:\d+)\//);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`gateway exited with ${code}: ${out}`)));
  });
  return { process: child, base: url };
}

before(async () => {
  ({ process: gateway, base } = await startGateway());
  port = Number(new URL(base).port);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  gateway?.kill('SIGINT');
});

/** A demo page for `user` in `channel`, connected and knowing its connection id. */
async function openPage(user, channel = 'lobby') {
  const page = await browser.newPage({ viewport: { width: 1000, height: 640 } });
  await page.goto(`${base}/?user=${user}&channel=${channel}`);
  if (channel !== 'secret') {
    await page.waitForSelector('#status.open');
    await page.waitForFunction(() => window.demo.connectionId);
    // The catch-up on the connect channel (a channel with history in `lambda-ws dev`) is answered.
    await page.waitForFunction(() => window.demo.catchingUp.size === 0);
    // So is its presence (`lambda-ws dev` gives lobby and room-* presence).
    if (channel === 'lobby' || channel.startsWith('room-')) {
      await page.waitForFunction((c) => window.demo.members(c) !== null, channel);
    }
  }
  return page;
}

function request(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const send = (target, message) =>
  request('POST', '/2015-03-31/functions/sender/invocations', { target, message });

/** The status of a WebSocket handshake with this query (101 when accepted). */
function handshakeStatus(query) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: `/local?${query}`,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' },
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(101); });
    req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', reject);
    req.end();
  });
}

test('a toast pushed by the sender appears in the page', async () => {
  const page = await openPage('toast-user');
  const report = await send({ user: 'toast-user' }, { type: 'toast', level: 'success', title: 'Saved', message: 'Invoice 7 saved' });
  assert.equal(report.body.delivered, 1);
  const toast = await page.waitForSelector('.toast-success');
  assert.match(await toast.textContent(), /Saved.*Invoice 7 saved/);
  await page.close();
});

test('a task drives the progress bar to 100 %', async () => {
  const page = await openPage('task-user');
  await page.click('#task-button');
  await page.waitForSelector('.task.done', { timeout: 10000 });
  assert.equal(await page.$eval('.task progress', (p) => p.value), 100);
  assert.match(await page.textContent('.task .task-text'), /100%/);
  await page.close();
});

test('chat between two pages, with a screenshot for people to look at', async () => {
  const ann = await openPage('ann');
  const bob = await openPage('bob');
  await bob.fill('#chat-input', 'hello from bob');
  await bob.click('#chat-form button');
  await ann.waitForSelector('#log .line:has-text("hello from bob")');
  assert.match(await ann.textContent('#log'), /bob: hello from bob/);
  await ann.click('#task-button');
  await ann.waitForSelector('.task.done', { timeout: 10000 });
  mkdirSync(join(root, 'target'), { recursive: true });
  await ann.screenshot({ path: join(root, 'target', 'demo-screenshot.png') });
  await ann.close();
  await bob.close();
});

test('after the gateway drops the connection it reconnects with a fresh token; the old one is refused', async () => {
  const page = await openPage('drop-user');
  const first = await page.evaluate(() => ({ id: window.demo.connectionId, token: window.demo.lastToken }));
  const deleted = await request('DELETE', `/local/@connections/${encodeURIComponent(first.id)}`);
  assert.equal(deleted.status, 204);
  await page.waitForFunction((old) => window.demo.connectionId && window.demo.connectionId !== old, first.id, { timeout: 15000 });
  const second = await page.evaluate(() => ({ id: window.demo.connectionId, token: window.demo.lastToken }));
  assert.notEqual(second.token, first.token, 'a new token for the new connection');
  assert.equal(await handshakeStatus(`ws_token=${first.token}`), 401, 'the used token is refused');
  await page.close();
});

test("closing a user's sessions shows in the page, which stays closed while the issuer refuses", async () => {
  const page = await openPage('signed-out');
  // From now on the app's token issuer refuses this user (signed out), as a real one would.
  let tokenRequests = 0;
  await page.route('**/ws-token**', (route) => {
    tokenRequests += 1;
    return route.fulfill({ status: 401, contentType: 'application/json',
      body: JSON.stringify({ error: { code: 'unauthorized', message: 'signed out' } }) });
  });
  const notice = { type: 'toast', level: 'warning', title: 'Signed out', message: 'You were signed out' };
  const report = await request('POST', '/2015-03-31/functions/sender/invocations',
    { target: { user: 'signed-out' }, message: notice, close: true });
  assert.equal(report.body.closed, 1, JSON.stringify(report.body));
  await page.waitForSelector('.toast-warning');
  await page.waitForSelector('#log .sys:has-text("the server closed this connection")');
  await page.waitForFunction(() => window.demo.state === 'refused');
  assert.match(await page.textContent('#status'), /refused: signed out/);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => window.demo.state), 'refused', 'no reconnect loop');
  assert.equal(tokenRequests, 1, 'one token request after the close, then none');
  await page.close();
});

test('changing channel reconnects into the new channel only', async () => {
  const ann = await openPage('mover');
  const bob = await openPage('room-user', 'room-2');
  const carol = await openPage('lobby-user', 'lobby');
  const before = await ann.evaluate(() => window.demo.lastToken);
  await ann.fill('#channel-input', 'room-2');
  await ann.click('#channel-form button');
  await ann.waitForSelector('#channel-name:has-text("room-2")');
  await ann.waitForSelector('#status.open');
  assert.notEqual(await ann.evaluate(() => window.demo.lastToken), before, 'fresh token for the new channel');
  await carol.evaluate(() => window.demo.send('chat', { message: 'lobby only' }));
  await carol.waitForSelector('#log .line:has-text("lobby only")');
  await bob.evaluate(() => window.demo.send('chat', { message: 'room-2 only' }));
  await ann.waitForSelector('#log .line:has-text("room-2 only")');
  assert.doesNotMatch(await ann.textContent('#log'), /lobby only/);
  for (const p of [ann, bob, carol]) await p.close();
});

test('sends made while disconnected are queued and flushed on reconnect', async () => {
  const sender = await openPage('queue-sender');
  const reader = await openPage('queue-reader');
  const id = await sender.evaluate(() => {
    window.queuedDuringOutage = new Promise((resolve) => {
      const off = window.demo.on('close', () => {
        off();
        window.demo.send('chat', { message: 'sent while away' });
        resolve(window.demo.queue.length);
      });
    });
    return window.demo.connectionId;
  });
  await request('DELETE', `/local/@connections/${encodeURIComponent(id)}`);
  assert.equal(await sender.evaluate(() => window.queuedDuringOutage), 1, 'queued, not sent');
  await reader.waitForSelector('#log .line:has-text("sent while away")', { timeout: 15000 });
  await sender.close();
  await reader.close();
});

test('a message over 128 KiB is refused in the client with a clear error', async () => {
  const page = await openPage('big-user');
  const error = await page.evaluate(() => {
    try {
      window.demo.send('chat', { message: 'x'.repeat(140 * 1024) });
      return null;
    } catch (e) {
      return `${e.name}: ${e.message}`;
    }
  });
  assert.match(error ?? '', /over 131072 bytes/);
  await page.close();
});

test('a channel the server forbids is reported, not retried', async () => {
  const page = await openPage('nosy', 'secret');
  await page.waitForFunction(() => window.demo.state === 'refused');
  assert.match(await page.textContent('#status'), /refused: channel not allowed/);
  await page.waitForTimeout(1500);
  assert.equal(await page.evaluate(() => window.demo.state), 'refused', 'no reconnect loop');
  await page.close();
});

test("the reference package's complete client page chats through the worked example", async () => {
  // The page from the reference's "Client integration" guide, verbatim but for where it connects
  // and where it asks for a token, served by `lambda-ws dev --pages` on the gateway's origin. Its
  // token request sends X-CSRFToken, so this gateway requires that header instead of x-lambda-ws
  // (LWS_CSRF_HEADER). It sends {"action":"chat_message","message":...}.
  const original = readFileSync(join(here, 'fixtures', 'seed-client.html'), 'utf8');
  const pages = mkdtempSync(join(tmpdir(), 'lws-pages-'));
  const gatewayArgs = ['--pages', pages];
  const seeds = await startGateway({ LWS_CSRF_HEADER: 'x-csrftoken' }, gatewayArgs);
  try {
    const wsBase = seeds.base.replace('http://', 'ws://') + '/local';
    const html = original.replace('wss://ws.example.com', wsBase).replace('"/api/ws-token/"', '"/ws-token"');
    assert.ok(html.includes(wsBase) && !html.includes('/api/ws-token/'), 'both changes made');
    writeFileSync(join(pages, 'seed-client.html'), html);
    const output = (page) => page.textContent('#output');
    const open = async () => {
      const page = await browser.newPage();
      await page.goto(`${seeds.base}/pages/seed-client.html`);
      await page.waitForFunction(() => document.getElementById('output').textContent.includes('Connected'));
      return page;
    };
    const first = await open();
    const second = await open();
    await first.fill('#message-input', 'Hello everyone');
    await first.click('button[type=submit]');
    const line = 'Received: {"type":"chat_message","username":"dev-user","message":"Hello everyone","channel":"general"}';
    for (const page of [first, second]) {
      await page.waitForFunction((l) => document.getElementById('output').textContent.includes(l), line);
    }
    await second.fill('#message-input', 'Hi back');
    await second.click('button[type=submit]');
    await first.waitForFunction(() => document.getElementById('output').textContent.includes('"message":"Hi back"'));
    assert.doesNotMatch(await output(first), /Closed|error/i);
    await first.close();
    await second.close();
  } finally {
    seeds.process.kill('SIGINT');
    rmSync(pages, { recursive: true, force: true });
  }
});

test('a toast link is rendered only for http(s) and relative URLs', async () => {
  const page = await openPage('link-user');
  for (const [n, url] of [['1', 'javascript:window.pwned=1'], ['2', 'data:text/html,<script>1</script>'], ['3', '/orders/7'], ['4', 'https://app.example.com/x']]) {
    await send({ user: 'link-user' }, { type: 'toast', level: 'info', message: `toast ${n}`, action_url: url, timeout_ms: 0 });
  }
  await page.waitForSelector('.toast:has-text("toast 4")');
  const links = await page.$$eval('.toast', (toasts) => toasts.map((t) => t.querySelector('a')?.getAttribute('href') ?? null));
  assert.deepEqual(links.slice(-4), [null, null, `${base}/orders/7`, 'https://app.example.com/x']);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  await page.close();
});

test('pushed messages named like lifecycle events do not fire lifecycle listeners', async () => {
  const page = await openPage('lifecycle-user');
  await page.evaluate(() => {
    window.fired = { open: 0, close: 0, refused: 0, message: 0, pushedOpen: 0, pushedRefused: 0 };
    for (const name of ['open', 'close', 'refused']) window.demo.on(name, () => { window.fired[name] += 1; });
    // Only the forged messages: other pages coming and going in the lobby push member events.
    const forged = new Set(['open', 'close', 'refused', 'message']);
    window.demo.on('message', (m) => { if (forged.has(m.type)) window.fired.message += 1; });
    window.demo.onMessage('open', () => { window.fired.pushedOpen += 1; });
    window.demo.onMessage('refused', () => { window.fired.pushedRefused += 1; });
  });
  for (const type of ['open', 'close', 'refused', 'message']) {
    const report = await send({ user: 'lifecycle-user' }, { type, status: 403, message: 'forged', code: 1000 });
    assert.equal(report.body.delivered, 1, JSON.stringify(report.body));
  }
  await page.waitForFunction(() => window.fired.message === 4);
  const fired = await page.evaluate(() => window.fired);
  assert.deepEqual(fired, { open: 0, close: 0, refused: 0, message: 4, pushedOpen: 1, pushedRefused: 1 });
  assert.equal(await page.evaluate(() => window.demo.state), 'open', 'still connected');
  assert.doesNotMatch(await page.textContent('#status'), /refused/);
  await page.close();
});

/** Drops `page`'s connection and holds its reconnect (its token request) until the returned function is called. */
async function dropAndHold(page) {
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  await page.route('**/ws-token*', async (route) => { await released; await route.continue(); });
  const id = await page.evaluate(() => {
    window.dropped = new Promise((resolve) => {
      const off = window.demo.on('close', () => { off(); resolve(); });
    });
    return window.demo.connectionId;
  });
  const deleted = await request('DELETE', `/local/@connections/${encodeURIComponent(id)}`);
  assert.equal(deleted.status, 204);
  await page.evaluate(() => window.dropped);
  return async () => {
    release();
    await page.waitForFunction((old) => window.demo.state === 'open' && window.demo.connectionId !== old, id,
      { timeout: 15000 }).catch(() => {});
    await page.unroute('**/ws-token*');
  };
}

test('progress sent while the page is disconnected arrives after the reconnect, every step in order', async () => {
  const page = await openPage('resume-user', 'task-resume');
  await page.evaluate(() => {
    window.percents = [];
    window.recoveries = [];
    window.demo.on('task_progress', (m) => window.percents.push(m.percent));
    window.demo.on('recovered', (r) => window.recoveries.push(r));
  });
  const progress = (percent) => send({ channel: 'task-resume' },
    { type: 'task_progress', task_id: 'export-7', percent, message: `Exporting ${percent}%`, done: percent === 100 });
  for (const percent of [10, 20]) assert.equal((await progress(percent)).body.delivered, 1);
  await page.waitForFunction(() => window.percents.length === 2);
  const reconnect = await dropAndHold(page);
  for (const percent of [30, 40, 50, 60, 70, 80, 90, 100]) {
    assert.equal((await progress(percent)).body.delivered, 0, 'sent while the page is away');
  }
  // Ask for a ping once open again, so the page learns its new connection id.
  await page.evaluate(() => {
    const off = window.demo.on('open', () => { off(); window.demo.request('ping').then((p) => { window.demo.connectionId = p.connection_id; }); });
  });
  await reconnect();
  await page.waitForFunction(() => window.percents.at(-1) === 100, null, { timeout: 15000 });
  assert.deepEqual(await page.evaluate(() => window.percents), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
  await page.waitForSelector('.task.done');
  assert.equal(await page.$eval('.task progress', (p) => p.value), 100);
  const recoveries = await page.evaluate(() => window.recoveries);
  assert.deepEqual(recoveries.map((r) => [r.channel, r.from, r.to]), [['task-resume', 2, 10]]);
  await page.close();
});

test('a chat line sent during an outage appears once after the reconnect', async () => {
  const away = await openPage('away-user', 'room-resume');
  const here = await openPage('here-user', 'room-resume');
  await here.evaluate(() => window.demo.send('chat', { message: 'before the outage' }));
  await away.waitForSelector('#log .line:has-text("before the outage")');
  const reconnect = await dropAndHold(away);
  await here.evaluate(() => window.demo.send('chat', { message: 'said while you were away' }));
  await here.waitForSelector('#log .line:has-text("said while you were away")');
  await reconnect();
  await away.waitForSelector('#log .line:has-text("said while you were away")', { timeout: 15000 });
  await here.evaluate(() => window.demo.send('chat', { message: 'after the outage' }));
  await away.waitForSelector('#log .line:has-text("after the outage")');
  const lines = await away.$$eval('#log .line', (all) => all.map((l) => l.textContent));
  assert.equal(lines.filter((l) => l.includes('said while you were away')).length, 1, lines.join('\n'));
  assert.equal(lines.filter((l) => l.includes('before the outage')).length, 1, 'no duplicate of what was seen');
  const order = ['before the outage', 'said while you were away', 'after the outage'].map((t) => lines.findIndex((l) => l.includes(t)));
  assert.deepEqual([...order].sort((a, b) => a - b), order, 'in order');
  await away.close();
  await here.close();
});

test("a second page opening and closing updates the first page's member list", async () => {
  const first = await openPage('ann-here', 'room-presence');
  const listed = (page) => page.$$eval('#members li', (items) => items.map((li) => li.dataset.user));
  await first.waitForSelector('#members li[data-user="ann-here"]');
  const second = await openPage('bob-arrives', 'room-presence');
  await first.waitForSelector('#members li[data-user="bob-arrives"]', { timeout: 10000 });
  assert.deepEqual(await listed(first), ['ann-here', 'bob-arrives']);
  assert.deepEqual(await listed(second), ['ann-here', 'bob-arrives'], 'the newcomer sees everyone');
  assert.match(await first.textContent('#members-count'), /2 people, 2 tabs/);
  // Bob's second tab changes no one's list; closing it neither.
  const again = await openPage('bob-arrives', 'room-presence');
  await again.close();
  await second.close();
  await first.waitForSelector('#members li[data-user="bob-arrives"]', { state: 'detached', timeout: 10000 });
  assert.deepEqual(await listed(first), ['ann-here']);
  assert.match(await first.textContent('#members-count'), /1 person, 1 tab/);
  await first.close();
});
