#!/usr/bin/env node
// End-to-end test of Latchkey's pages in real headless Chromium, and the README screenshots.
//
//   node tests/browser/e2e.mjs                  # run the test; screenshots go to the temp dir
//   node tests/browser/e2e.mjs --screenshots    # also write docs/screenshots/*.png
//   LATCHKEY_SCREENSHOTS=1 node tests/browser/e2e.mjs   # same as --screenshots
//
// Needs the binary (LATCHKEY_BIN, default target/debug/latchkey: `cargo build -p latchkey`),
// Chromium (CHROMIUM_BIN, default /usr/bin/chromium) and `npm ci` in tests/browser.
// Exit code 0 when every step passes; 1 with a message naming the failed step otherwise.

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

const BIN = process.env.LATCHKEY_BIN ? path.resolve(process.env.LATCHKEY_BIN) : path.join(REPO, 'target', 'debug', 'latchkey');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const WRITE_SCREENSHOTS = process.argv.includes('--screenshots') || process.env.LATCHKEY_SCREENSHOTS === '1';
const KEEP_TMP = process.argv.includes('--keep');

const COMPANY = { name: 'Organization Inc.', domain: 'organization.com' };
const USER = { extension: '101', email: 'alice@example.com', role: 'office-manager' };
const LOGIN_NAME = `${USER.extension}@${COMPANY.domain}`;
const WEAK = { password: 'short', confirmation: 'different', pin: '1234' };
const FIRST_PASSWORD = 'Welcome2Sonar';
const PIN = '2580';
const NEW_PASSWORD = 'Brand2NewPass';
const SESSION_COOKIE = '__Host-latchkey_session';

const DESKTOP = { viewport: { width: 1100, height: 800 }, deviceScaleFactor: 1 };
const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 1,
  isMobile: true,
  hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
};
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];
const TIMEOUT_MS = 15_000;

let welcomeLink; // opened twice: to set up, and again once used

// ------------------------------------------------------------------------------------------ output

const started = Date.now();
let stepNo = 0;
let currentStep = 'start';

/** Link tokens are credentials: never print one, even of this throwaway instance. */
const redact = (s) => String(s).replace(/\/(complete-setup|reset-password)\/[A-Za-z0-9_\-=.%]+/g, '/$1/<token>');

async function step(title, fn) {
  stepNo += 1;
  currentStep = `${stepNo}. ${title}`;
  const t0 = Date.now();
  const detail = await fn();
  const ms = Date.now() - t0;
  console.log(`ok   ${String(stepNo).padStart(2)}  ${title}${detail ? ` (${redact(detail)})` : ''}  [${ms} ms]`);
}

class CheckFailed extends Error {}
function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

// ------------------------------------------------------------------------------------------ email

/** Decodes quoted-printable: soft line breaks (`=` at a line end) vanish, `=XX` is a byte. */
function decodeQuotedPrintable(s) {
  const src = Buffer.from(s.replace(/=[ \t]*\r?\n/g, ''), 'utf8');
  const out = [];
  const hex = (b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
  for (let i = 0; i < src.length; i++) {
    if (src[i] === 0x3d && i + 2 < src.length && hex(src[i + 1]) && hex(src[i + 2])) {
      out.push(parseInt(String.fromCharCode(src[i + 1], src[i + 2]), 16));
      i += 2;
    } else {
      out.push(src[i]);
    }
  }
  return Buffer.from(out).toString('utf8');
}

/** RFC 2047 encoded words in headers (`=?utf-8?Q?...?=` and `=?utf-8?B?...?=`). */
function decodeHeader(v) {
  return v
    .replace(/\?=\s+=\?/g, '?==?')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset, enc, text) =>
      enc.toUpperCase() === 'B'
        ? Buffer.from(text, 'base64').toString('utf8')
        : decodeQuotedPrintable(text.replace(/_/g, ' ')),
    );
}

/** A MIME entity: lower-cased headers, and either its leaf body (decoded) or its parts. */
function parseEntity(raw) {
  const text = raw.replace(/\r\n/g, '\n');
  const split = text.indexOf('\n\n');
  const head = split < 0 ? text : text.slice(0, split);
  const body = split < 0 ? '' : text.slice(split + 2);
  const headers = {};
  for (const line of head.replace(/\n[ \t]+/g, ' ').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const type = headers['content-type'] || 'text/plain';
  if (/^multipart\//i.test(type)) {
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    check(boundary, `multipart email without a boundary: ${type}`);
    const parts = body.split(`--${boundary}`).slice(1);
    const closing = parts.findIndex((p) => p.startsWith('--'));
    return { headers, type, parts: (closing < 0 ? parts : parts.slice(0, closing)).map((p) => parseEntity(p.replace(/^\n/, ''))) };
  }
  const cte = (headers['content-transfer-encoding'] || '7bit').toLowerCase();
  const decoded =
    cte === 'quoted-printable' ? decodeQuotedPrintable(body) : cte === 'base64' ? Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8') : body;
  return { headers, type, body: decoded };
}

function leaves(entity) {
  return entity.parts ? entity.parts.flatMap(leaves) : [entity];
}

function listOutbox(outbox) {
  if (!fs.existsSync(outbox)) return [];
  return fs
    .readdirSync(outbox)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => ({ file: path.join(outbox, f), name: f, mtime: fs.statSync(path.join(outbox, f)).mtimeMs }))
    .sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
}

/** Reads one .eml: subject, recipient, the text part and the HTML part. */
function readEmail(file) {
  const msg = parseEntity(fs.readFileSync(file, 'utf8'));
  check(/^multipart\//i.test(msg.type), `${path.basename(file)}: expected a multipart email, got ${msg.type}`);
  const all = leaves(msg);
  const text = all.find((e) => /^text\/plain/i.test(e.type));
  const html = all.find((e) => /^text\/html/i.test(e.type));
  check(text, `${path.basename(file)}: no text/plain part`);
  check(html, `${path.basename(file)}: no text/html part`);
  return { subject: decodeHeader(msg.headers.subject || ''), to: msg.headers.to || '', text: text.body, html: html.body };
}

/** The newest email whose text part holds a `/kind/<token>` link on our server; polls (mail is sent in the background). */
async function waitForLink(outbox, kind, base, { after = new Set(), timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  const pattern = new RegExp(`https?://[^\\s<>"']+/${kind}/[A-Za-z0-9_\\-]+`);
  for (;;) {
    const fresh = listOutbox(outbox).filter((m) => !after.has(m.name));
    for (const m of fresh.reverse()) {
      let mail;
      try {
        mail = readEmail(m.file);
      } catch (e) {
        if (Date.now() < deadline) continue; // maybe still being written
        throw e;
      }
      const link = pattern.exec(mail.text)?.[0];
      if (link) {
        check(mail.to.includes(USER.email), `the ${kind} email went to "${mail.to}", not ${USER.email}`);
        check(new URL(link).origin === base, `the ${kind} link points to ${new URL(link).origin}, not to the server at ${base}`);
        check(mail.html.includes(`/${kind}/`), `the ${kind} email's HTML part has no /${kind}/ link`);
        return { link, mail, name: m.name };
      }
    }
    if (Date.now() > deadline) {
      throw new CheckFailed(`no email with a /${kind}/ link in ${outbox} after ${timeoutMs / 1000} s (${listOutbox(outbox).length} emails there)`);
    }
    await sleep(150);
  }
}

// ------------------------------------------------------------------------------------------ server

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The child's environment: ours without any LATCHKEY_* (a stray SMTP or config setting would change the test), plus the test's. */
function childEnv(dataDir, port) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LATCHKEY_')));
  return { ...env, LATCHKEY_DATA_DIR: dataDir, LATCHKEY_LISTEN: `127.0.0.1:${port}`, RUST_LOG: process.env.RUST_LOG || 'info' };
}

function cli(env, args) {
  const r = spawnSync(BIN, args, { env, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new CheckFailed(`latchkey ${args.join(' ')}: ${r.error.message}`);
  check(r.status === 0, `latchkey ${args.slice(0, 2).join(' ')} exited with ${r.status ?? r.signal}:\n${redact(r.stderr || r.stdout)}`);
  return r.stdout;
}

function tail(file, lines = 30) {
  try {
    return redact(fs.readFileSync(file, 'utf8').replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-lines).join('\n'));
  } catch {
    return '(no log)';
  }
}

async function stopServer(server) {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  let timer;
  const timedOut = new Promise((r) => (timer = setTimeout(() => r(true), 5000)));
  if (await Promise.race([exited.then(() => false), timedOut])) {
    server.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}

// ------------------------------------------------------------------------------------------ page helpers

async function visibleText(locator) {
  return (await locator.allInnerTexts()).join(' | ').replace(/\s+/g, ' ').trim();
}

/** Waits for `selector` to show `text` (string or RegExp); fails with what the page shows instead. */
async function expectText(page, selector, text) {
  const loc = page.locator(selector).filter({ hasText: text }).first();
  try {
    await loc.waitFor({ state: 'visible', timeout: TIMEOUT_MS });
  } catch {
    const seen = await visibleText(page.locator(selector)).catch(() => '');
    throw new CheckFailed(`expected ${selector} to show ${text} on ${redact(page.url())}; it shows: ${seen ? `"${seen}"` : 'nothing'}`);
  }
}

function expectPath(page, pathname, search) {
  const u = new URL(page.url());
  check(u.pathname === pathname && (search === undefined || u.search === search), `expected to be on ${pathname}${search ?? ''}, but on ${redact(u.pathname + u.search)}`);
}

async function goto(page, url, status = 200) {
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp, `no response for ${redact(url)}`);
  check(resp.status() === status, `GET ${redact(new URL(url).pathname)} answered ${resp.status()}, expected ${status}`);
  return resp;
}

/** Clicks a submit button and waits for the page the form's answer (or its redirect) shows. */
async function submit(page, buttonSelector) {
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT_MS }), page.click(buttonSelector)]);
  return resp;
}

async function expectFieldErrors(page, field) {
  const errors = page.locator(`.field:has(#${field}) > ul.field-errors`);
  check((await errors.count()) === 1, `field "${field}": expected its error list (ul.field-errors) inside its .field, found ${await errors.count()}`);
  const items = await errors.locator('li').allInnerTexts();
  check(items.length > 0, `field "${field}": the error list is empty`);
  check(await errors.isVisible(), `field "${field}": the error list is not visible`);
  const input = page.locator(`#${field}`);
  check((await input.getAttribute('aria-invalid')) === 'true', `field "${field}": the input is not aria-invalid`);
  const describedBy = (await input.getAttribute('aria-describedby')) || '';
  check(describedBy.split(/\s+/).includes(`${field}-errors`), `field "${field}": aria-describedby="${describedBy}" does not name ${field}-errors`);
  return items;
}

async function signIn(page, base, password) {
  await goto(page, `${base}/sign-in`);
  await page.fill('#login_name', LOGIN_NAME);
  await page.fill('#password', password);
  return submit(page, 'main form button[type=submit]');
}

/** The page fits its viewport: nothing scrolls sideways. */
async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

// ------------------------------------------------------------------------------------------ the test

async function main() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-e2e-'));
  const dataDir = path.join(tmp, 'data');
  const outbox = path.join(dataDir, 'outbox');
  const shotsDir = WRITE_SCREENSHOTS ? path.join(REPO, 'docs', 'screenshots') : path.join(tmp, 'screenshots');
  fs.mkdirSync(dataDir);
  fs.mkdirSync(shotsDir, { recursive: true });
  const serverLog = path.join(tmp, 'server.log');
  const shots = [];
  const problems = [];
  let server;
  let browser;
  let page;
  let ok = false;

  const shoot = async (p, name) => {
    const file = path.join(shotsDir, name);
    await p.screenshot({ path: file, fullPage: true, animations: 'disabled', caret: 'hide' });
    shots.push(name);
    return name;
  };

  const onSignal = async (sig) => {
    console.error(`\ninterrupted (${sig}); stopping the server`);
    await browser?.close().catch(() => {});
    await stopServer(server);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const show = (p) => (path.relative(process.cwd(), p).startsWith('..') ? p : path.relative(process.cwd(), p));
    console.log(`latchkey e2e: binary ${show(BIN)}, chromium ${CHROMIUM}, screenshots -> ${show(shotsDir)}`);

    // ---------------------------------------------------------------- 1. setup
    let env;
    let base;
    await step('create the company and the user with the CLI', async () => {
      check(fs.existsSync(BIN), `no latchkey binary at ${BIN}: build it with \`cargo build -p latchkey\` or set LATCHKEY_BIN`);
      fs.accessSync(BIN, fs.constants.X_OK);
      check(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: \`apt-get install -y chromium\` or set CHROMIUM_BIN`);
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      env = childEnv(dataDir, port);
      cli(env, ['company', 'create', '--name', COMPANY.name, '--domain', COMPANY.domain]);
      const out = cli(env, ['user', 'create', '--company', COMPANY.domain, '--extension', USER.extension, '--email', USER.email, '--role', USER.role]);
      check(out.includes(LOGIN_NAME), `user create did not print the login name ${LOGIN_NAME}`);
      return `login name ${LOGIN_NAME}, port ${port}`;
    });

    await step('start `latchkey serve` and wait for /readyz', async () => {
      const log = fs.openSync(serverLog, 'a');
      server = spawn(BIN, ['serve'], { env, stdio: ['ignore', log, log] });
      fs.closeSync(log);
      let spawnError;
      server.once('error', (e) => (spawnError = e));
      const deadline = Date.now() + 30_000;
      for (;;) {
        if (spawnError) throw new CheckFailed(`could not start the server: ${spawnError.message}`);
        if (server.exitCode !== null || server.signalCode !== null) {
          throw new CheckFailed(`the server exited (${server.exitCode ?? server.signalCode}) before it was ready; its log:\n${tail(serverLog)}`);
        }
        try {
          const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(1000) });
          if (r.status === 200) break;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) throw new CheckFailed(`/readyz was not 200 after 30 s; server log:\n${tail(serverLog)}`);
        await sleep(100);
      }
      return `${base}`;
    });

    await step('launch headless Chromium', async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
      return `Chromium ${browser.version()}`;
    });
    const desktop = await browser.newContext(DESKTOP);
    desktop.setDefaultTimeout(TIMEOUT_MS);
    page = await desktop.newPage();
    const watch = (p, label) => {
      p.on('pageerror', (e) => problems.push(`${label}: script error: ${e.message}`));
      // Pages answer 4xx on purpose (422 form errors, 401, 410): only a failed subresource is a problem.
      p.on('response', (r) => {
        if (r.status() >= 400 && r.request().resourceType() !== 'document' && !/\/favicon\.ico$/.test(new URL(r.url()).pathname)) {
          problems.push(`${label}: ${r.request().resourceType()} ${redact(new URL(r.url()).pathname)} answered ${r.status()}`);
        }
      });
      p.on('console', (m) => {
        if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) problems.push(`${label}: console error: ${redact(m.text())}`);
      });
    };
    watch(page, 'desktop');

    // ---------------------------------------------------------------- 2. Complete Setup
    await step('open the Complete Setup link of the welcome email', async () => {
      const { link, mail } = await waitForLink(outbox, 'complete-setup', base, { timeoutMs: 2000 });
      welcomeLink = link;
      await goto(page, link);
      await expectText(page, 'h1', 'Complete Setup');
      await expectText(page, '.facts code', LOGIN_NAME);
      await expectText(page, '.lead', COMPANY.name);
      return `subject "${mail.subject}"; ${await shoot(page, 'complete-setup.png')}`;
    });

    await step('weak password, mismatched confirmation and PIN 1234 show errors next to their fields', async () => {
      await page.fill('#password', WEAK.password);
      await page.fill('#password_confirmation', WEAK.confirmation);
      await page.fill('#pin', WEAK.pin);
      const resp = await submit(page, 'main form button[type=submit]');
      check(resp?.status() === 422, `the weak Complete Setup form answered ${resp?.status()}, expected 422`);
      expectPath(page, new URL(welcomeLink).pathname);
      const pw = await expectFieldErrors(page, 'password');
      check(pw.some((m) => /8 characters/.test(m)) && pw.some((m) => /capital/.test(m)) && pw.some((m) => /number/.test(m)),
        `password errors should name length, capital and number; got ${JSON.stringify(pw)}`);
      const conf = await expectFieldErrors(page, 'password_confirmation');
      check(conf.some((m) => /match/i.test(m)), `confirmation errors should say it does not match; got ${JSON.stringify(conf)}`);
      const pin = await expectFieldErrors(page, 'pin');
      check(pin.some((m) => /sequential/i.test(m)), `PIN errors should reject 1234 as sequential; got ${JSON.stringify(pin)}`);
      check((await page.inputValue('#password')) === '', 'the password field should come back empty');
      return `${pw.length + conf.length + pin.length} errors; ${await shoot(page, 'complete-setup-errors.png')}`;
    });

    await step('a good password and PIN 2580 -> Save -> sign-in page with the set-up notice', async () => {
      await page.fill('#password', FIRST_PASSWORD);
      await page.fill('#password_confirmation', FIRST_PASSWORD);
      await page.fill('#pin', PIN);
      await submit(page, 'main form button:has-text("Save")');
      expectPath(page, '/sign-in', '?done=setup');
      await expectText(page, '.alert.success', 'Your account is set up');
    });

    // ---------------------------------------------------------------- 3. sign in, My Account
    await step(`sign in as ${LOGIN_NAME} -> My Account with this session listed`, async () => {
      await signIn(page, base, FIRST_PASSWORD);
      expectPath(page, '/account');
      await expectText(page, 'h1', 'My Account');
      await expectText(page, 'h2', 'Account Security');
      await expectText(page, 'table.sessions tbody tr', 'This session');
      const rows = await page.locator('table.sessions tbody tr').count();
      check(rows === 1, `expected 1 session row, found ${rows}`);
      await expectText(page, '.facts', 'Office Manager');
      return await shoot(page, 'account.png');
    });

    await step(`the session cookie is ${SESSION_COOKIE}, HttpOnly, Secure, SameSite=Lax`, async () => {
      const cookies = await desktop.cookies(base);
      const c = cookies.find((k) => k.name === SESSION_COOKIE);
      check(c, `no ${SESSION_COOKIE} cookie; cookies: ${cookies.map((k) => k.name).join(', ') || 'none'}`);
      check(c.httpOnly, 'the session cookie is not HttpOnly');
      check(c.secure, 'the session cookie is not Secure');
      check(c.sameSite === 'Lax', `the session cookie is SameSite=${c.sameSite}, expected Lax`);
      check(c.path === '/' && !c.domain.startsWith('.'), `a __Host- cookie must have Path=/ and no Domain; got path ${c.path}, domain ${c.domain}`);
      check(c.expires === -1, 'the session cookie should be a session cookie (no Expires/Max-Age)');
    });

    // The phone: its own sign-in, so the desktop screenshots above show one session.
    const phone = await browser.newContext(PHONE);
    phone.setDefaultTimeout(TIMEOUT_MS);
    const phonePage = await phone.newPage();
    watch(phonePage, 'phone');
    await step('on a 390x844 phone: sign-in page, sign in, My Account fits the screen', async () => {
      await goto(phonePage, `${base}/sign-in`);
      const a = await shoot(phonePage, 'sign-in-phone.png');
      check((await horizontalOverflow(phonePage)) <= 0, `the sign-in page scrolls sideways on a phone by ${await horizontalOverflow(phonePage)} px`);
      await signIn(phonePage, base, FIRST_PASSWORD);
      expectPath(phonePage, '/account');
      await expectText(phonePage, 'table.sessions tbody tr', 'This session');
      const overflow = await horizontalOverflow(phonePage);
      const b = await shoot(phonePage, 'account-phone.png');
      check(overflow <= 0, `My Account scrolls sideways on a 390 px phone by ${overflow} px`);
      return `${a}, ${b}`;
    });

    // ---------------------------------------------------------------- 4. sign out
    await step('sign out from the header -> "You are signed out."', async () => {
      await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
      expectPath(page, '/sign-in', '?done=signed-out');
      await expectText(page, '.alert.success', 'You are signed out.');
      const left = (await desktop.cookies(base)).find((k) => k.name === SESSION_COOKIE);
      check(!left, 'the session cookie is still there after signing out');
      const shot = await shoot(page, 'sign-in.png');
      await goto(page, `${base}/account`);
      expectPath(page, '/sign-in');
      return shot;
    });

    // ---------------------------------------------------------------- 5. forgot password, reset
    let resetLink;
    await step('forgot password: submit the designated email -> "Check your email" -> reset email arrives', async () => {
      await goto(page, `${base}/forgot-password`);
      await expectText(page, 'h1', 'Forgot password');
      const shot = await shoot(page, 'forgot-password.png');
      const before = new Set(listOutbox(outbox).map((m) => m.name));
      await page.fill('#account', USER.email);
      await submit(page, 'main form button:has-text("Send")');
      await expectText(page, 'h1', 'Check your email');
      const { link, mail } = await waitForLink(outbox, 'reset-password', base, { after: before, timeoutMs: 10_000 });
      resetLink = link;
      return `${shot}; subject "${mail.subject}"`;
    });

    await step(`open the reset link, set a new password -> sign-in page with the reset notice`, async () => {
      await goto(page, resetLink);
      await expectText(page, 'h1', 'Reset your password');
      await expectText(page, '.lead code', LOGIN_NAME);
      const shot = await shoot(page, 'reset-password.png');
      await page.fill('#password', NEW_PASSWORD);
      await page.fill('#password_confirmation', NEW_PASSWORD);
      await submit(page, 'main form button:has-text("Save")');
      expectPath(page, '/sign-in', '?done=reset');
      await expectText(page, '.alert.success', 'Your password was reset');
      return shot;
    });

    await step('the reset signed out the phone session too', async () => {
      await goto(phonePage, `${base}/account`);
      expectPath(phonePage, '/sign-in');
    });

    await step('the old password no longer works ("not right")', async () => {
      const resp = await signIn(page, base, FIRST_PASSWORD);
      check(resp?.status() === 401, `sign-in with the old password answered ${resp?.status()}, expected 401`);
      expectPath(page, '/sign-in');
      await expectText(page, '.alert.error', 'not right');
      check((await page.inputValue('#login_name')) === LOGIN_NAME, 'the login name was not kept after the failed sign-in');
    });

    await step('the new password signs in', async () => {
      await signIn(page, base, NEW_PASSWORD);
      expectPath(page, '/account');
      await expectText(page, 'table.sessions tbody tr', 'This session');
      await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
      expectPath(page, '/sign-in', '?done=signed-out');
    });

    // ---------------------------------------------------------------- 6. other pages
    await step('forgot login name page', async () => {
      await goto(page, `${base}/forgot-login-name`);
      await expectText(page, 'h1', 'Forgot login name');
      await page.locator('#email').waitFor();
      return await shoot(page, 'forgot-login-name.png');
    });

    await step('the used welcome link -> "already used" page', async () => {
      const resp = await page.goto(welcomeLink, { waitUntil: 'load' });
      check(resp && resp.status() >= 400 && resp.status() < 500, `the used welcome link answered ${resp?.status()}, expected a 4xx`);
      await expectText(page, 'h1', 'already used');
      await page.locator('main a.button').waitFor();
      check((await page.locator('main form').count()) === 0, 'the used-link page still shows a form');
      return `${resp.status()}; ${await shoot(page, 'link-used.png')}`;
    });

    await step('no script or console errors in the pages', async () => {
      check(problems.length === 0, problems.join('\n'));
    });

    await phone.close();
    ok = true;
  } catch (e) {
    process.exitCode = 1;
    console.error(`FAIL ${currentStep}`);
    console.error(`     ${redact(e instanceof CheckFailed ? e.message : e?.stack || e).replace(/\n/g, '\n     ')}`);
    if (page && !page.isClosed()) {
      const file = path.join(tmp, 'failure.png');
      if (await page.screenshot({ path: file, fullPage: true }).then(() => true, () => false)) {
        console.error(`     page at failure: ${redact(page.url())} (screenshot ${file})`);
      }
    }
    if (fs.existsSync(serverLog)) console.error(`     server log (last lines):\n${tail(serverLog, 15).replace(/^/gm, '       ')}`);
  } finally {
    await browser?.close().catch(() => {});
    await stopServer(server);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    if (ok) {
      console.log(`PASS ${stepNo} steps in ${secs} s; ${shots.length} screenshots in ${WRITE_SCREENSHOTS ? path.relative(process.cwd(), shotsDir) || shotsDir : shotsDir}`);
      if (!KEEP_TMP && WRITE_SCREENSHOTS) fs.rmSync(tmp, { recursive: true, force: true });
      else if (!KEEP_TMP) fs.rmSync(dataDir, { recursive: true, force: true });
    } else {
      console.error(`FAILED after ${secs} s; data, server log and screenshots kept in ${tmp}`);
    }
  }
}

await main();
