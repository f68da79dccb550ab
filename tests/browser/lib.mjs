// Shared by Latchkey's browser tests (e2e.mjs, sso.mjs): numbered steps with clear failure
// messages, the outbox's emails and texts, the latchkey binary (CLI and server), headless
// Chromium, page helpers, and the run itself (temp dir, screenshots, clean-up, the verdict).
//
// Every test here accepts:
//   --screenshots (or LATCHKEY_SCREENSHOTS=1)  write its screenshots to docs/screenshots/
//   --keep                                      keep the temp dir (data, logs) after a pass
// and reads LATCHKEY_BIN (default target/debug/latchkey) and CHROMIUM_BIN (default /usr/bin/chromium).

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');

export const BIN = process.env.LATCHKEY_BIN ? path.resolve(process.env.LATCHKEY_BIN) : path.join(REPO, 'target', 'debug', 'latchkey');
export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const WRITE_SCREENSHOTS = process.argv.includes('--screenshots') || process.env.LATCHKEY_SCREENSHOTS === '1';
export const KEEP_TMP = process.argv.includes('--keep');

export const SESSION_COOKIE = '__Host-latchkey_session';

export const DESKTOP = { viewport: { width: 1100, height: 800 }, deviceScaleFactor: 1 };
export const PHONE = {
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 1,
  isMobile: true,
  hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36',
};
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-first-run',
];
export const TIMEOUT_MS = 15_000;

// ------------------------------------------------------------------------------------------ output

let stepNo = 0;
let currentStep = 'start';

/**
 * Link tokens, TOTP secrets, recovery codes and single sign-on parameters (a waiting identity,
 * an authorization code, state) are credentials: never print one, even of this throwaway instance.
 */
export const redact = (s) =>
  String(s)
    .replace(/\/(complete-setup|reset-password|confirm-email)\/[A-Za-z0-9_\-=.%]+/g, '/$1/<token>')
    .replace(/secret=[A-Za-z2-7]+/gi, 'secret=<secret>')
    .replace(/([?&](?:waiting|code|state|nonce|code_challenge|code_verifier)=)[^&\s"'<>#]+/g, '$1<redacted>')
    .replace(/\b[0-9a-z]{4}-[0-9a-z]{4}-[0-9a-z]{4}\b/g, '<recovery code>');

/** One numbered step: prints `ok  N  title (detail)  [ms]` when `fn` returns; the harness names it when it throws. */
export async function step(title, fn) {
  stepNo += 1;
  currentStep = `${stepNo}. ${title}`;
  const t0 = Date.now();
  const detail = await fn();
  const ms = Date.now() - t0;
  console.log(`ok   ${String(stepNo).padStart(2)}  ${title}${detail ? ` (${redact(detail)})` : ''}  [${ms} ms]`);
}

export class CheckFailed extends Error {}
export function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

export function listOutbox(outbox) {
  if (!fs.existsSync(outbox)) return [];
  return fs
    .readdirSync(outbox)
    .filter((f) => f.endsWith('.eml'))
    .map((f) => ({ file: path.join(outbox, f), name: f, mtime: fs.statSync(path.join(outbox, f)).mtimeMs }))
    .sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
}

/** Reads one .eml: subject, recipient, the text part and the HTML part. */
export function readEmail(file) {
  const msg = parseEntity(fs.readFileSync(file, 'utf8'));
  check(/^multipart\//i.test(msg.type), `${path.basename(file)}: expected a multipart email, got ${msg.type}`);
  const all = leaves(msg);
  const text = all.find((e) => /^text\/plain/i.test(e.type));
  const html = all.find((e) => /^text\/html/i.test(e.type));
  check(text, `${path.basename(file)}: no text/plain part`);
  check(html, `${path.basename(file)}: no text/html part`);
  return { subject: decodeHeader(msg.headers.subject || ''), to: msg.headers.to || '', text: text.body, html: html.body };
}

/**
 * Polls the outbox (mail is sent in the background) for the newest email after `after` that `pick`
 * returns a value for; with `to`, that email must be addressed to it.
 */
export async function waitForMail(outbox, pick, what, { after = new Set(), timeoutMs = 10_000, to } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const m of listOutbox(outbox).filter((x) => !after.has(x.name)).reverse()) {
      let mail;
      try {
        mail = readEmail(m.file);
      } catch (e) {
        if (Date.now() < deadline) continue; // maybe still being written
        throw e;
      }
      const found = pick(mail);
      if (found) {
        if (to !== undefined) check(mail.to.includes(to), `the ${what} email went to "${mail.to}", not ${to}`);
        return { found, mail, name: m.name };
      }
    }
    if (Date.now() > deadline) {
      throw new CheckFailed(`no ${what} email in ${outbox} after ${timeoutMs / 1000} s (${listOutbox(outbox).length} emails there)`);
    }
    await sleep(150);
  }
}

/** The newest email whose text part holds a `/kind/<token>` link on our server. */
export async function waitForLink(outbox, kind, base, opts) {
  const pattern = new RegExp(`https?://[^\\s<>"']+/${kind}/[A-Za-z0-9_\\-]+`);
  const { found: link, mail, name } = await waitForMail(outbox, (mail) => pattern.exec(mail.text)?.[0], `/${kind}/ link`, opts);
  check(new URL(link).origin === base, `the ${kind} link points to ${new URL(link).origin}, not to the server at ${base}`);
  check(mail.html.includes(`/${kind}/`), `the ${kind} email's HTML part has no /${kind}/ link`);
  return { link, mail, name };
}

/** The newest email after `after` whose subject matches `subject`. */
export async function waitForSubject(outbox, subject, opts) {
  return (await waitForMail(outbox, (mail) => subject.test(mail.subject), `"${subject.source}"`, opts)).mail;
}

/** The 6-digit code on a line of its own in a code email's text part. */
export function codeInEmail(mail, what) {
  const code = /^[ \t]*(\d{6})[ \t]*$/m.exec(mail.text)?.[1];
  check(code, `the ${what} email ("${mail.subject}") has no 6-digit code on a line of its own`);
  check(mail.html.includes(code), `the ${what} email's HTML part does not show the code`);
  return code;
}

// ------------------------------------------------------------------------------------------ text messages

/** With no SMS gateway, texts go to the same outbox as emails: one `{to, body, time}` .sms.json file each. */
export function listTexts(outbox) {
  if (!fs.existsSync(outbox)) return [];
  return fs
    .readdirSync(outbox)
    .filter((f) => f.endsWith('.sms.json'))
    .map((f) => ({ file: path.join(outbox, f), name: f, mtime: fs.statSync(path.join(outbox, f)).mtimeMs }))
    .sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
}

/** Polls the outbox for the newest text after `after`; answers it with the code its body starts with. */
export async function waitForSms(outbox, what, { after = new Set(), timeoutMs = 10_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const newest = listTexts(outbox).filter((x) => !after.has(x.name)).pop();
    if (newest) {
      const sms = JSON.parse(fs.readFileSync(newest.file, 'utf8')); // written under another name, then renamed: never partial
      check(typeof sms.to === 'string' && typeof sms.body === 'string' && !Number.isNaN(Date.parse(sms.time)), `${newest.name} is not {to, body, time}`);
      const code = /^(\d{6})\b/.exec(sms.body)?.[1];
      check(code, `the ${what} text does not start with a 6-digit code`);
      return { ...sms, code, name: newest.name };
    }
    if (Date.now() > deadline) throw new CheckFailed(`no ${what} text (.sms.json) in ${outbox} after ${timeoutMs / 1000} s`);
    await sleep(150);
  }
}

/** The names of everything in the outbox now: pass as `after` to wait for what comes next. */
export const outboxNames = (outbox) => new Set([...listOutbox(outbox), ...listTexts(outbox)].map((m) => m.name));

// ------------------------------------------------------------------------------------------ processes

export function freePort() {
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

/**
 * The latchkey child's environment: ours without any LATCHKEY_* (a stray SMTP or config setting
 * would change the test), plus the test's own settings (`extra`, e.g. LATCHKEY_SSO__GOOGLE__ISSUER).
 */
export function childEnv(dataDir, port, extra = {}) {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LATCHKEY_')));
  return { ...env, LATCHKEY_DATA_DIR: dataDir, LATCHKEY_LISTEN: `127.0.0.1:${port}`, RUST_LOG: process.env.RUST_LOG || 'info', ...extra };
}

/** Runs `latchkey ARGS`; answers its stdout and stderr, fails with its output on a non-zero exit. */
export function cliRun(env, args) {
  const r = spawnSync(BIN, args, { env, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new CheckFailed(`latchkey ${args.join(' ')}: ${r.error.message}`);
  check(r.status === 0, `latchkey ${args.slice(0, 2).join(' ')} exited with ${r.status ?? r.signal}:\n${redact(r.stderr || r.stdout)}`);
  return { stdout: r.stdout, stderr: r.stderr };
}

/** Runs `latchkey ARGS`; answers its stdout. */
export function cli(env, args) {
  return cliRun(env, args).stdout;
}

export function tail(file, lines = 30) {
  try {
    return redact(fs.readFileSync(file, 'utf8').replace(/\x1b\[[0-9;]*m/g, '').trimEnd().split('\n').slice(-lines).join('\n'));
  } catch {
    return '(no log)';
  }
}

/** SIGTERM, then SIGKILL after 5 s. */
export async function stopProcess(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  let timer;
  const timedOut = new Promise((r) => (timer = setTimeout(() => r(true), 5000)));
  if (await Promise.race([exited.then(() => false), timedOut])) {
    child.kill('SIGKILL');
    await exited;
  }
  clearTimeout(timer);
}

/** Checks the binary and Chromium are there before anything else; tells how to get them when not. */
export function requirePrerequisites() {
  check(fs.existsSync(BIN), `no latchkey binary at ${BIN}: build it with \`cargo build -p latchkey\` or set LATCHKEY_BIN`);
  fs.accessSync(BIN, fs.constants.X_OK);
  check(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: \`apt-get install -y chromium\` or set CHROMIUM_BIN`);
}

/**
 * Starts `latchkey serve` with `env` (its output into the run's server log) and waits until
 * `readyUrl` (its /readyz) answers 200. The run stops it at the end.
 */
export async function startLatchkey(run, env, readyUrl) {
  const log = fs.openSync(run.serverLog, 'a');
  const server = spawn(BIN, ['serve'], { env, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  run.children.push(server);
  let spawnError;
  server.once('error', (e) => (spawnError = e));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (spawnError) throw new CheckFailed(`could not start the server: ${spawnError.message}`);
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new CheckFailed(`the server exited (${server.exitCode ?? server.signalCode}) before it was ready; its log:\n${tail(run.serverLog)}`);
    }
    try {
      const r = await fetch(readyUrl, { signal: AbortSignal.timeout(1000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new CheckFailed(`${new URL(readyUrl).pathname} was not 200 after 30 s; server log:\n${tail(run.serverLog)}`);
    await sleep(100);
  }
  return server;
}

// ------------------------------------------------------------------------------------------ browser

export async function launchChromium(run) {
  run.browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  return run.browser;
}

/** Script errors, console errors and failed subresources of `p` go to `problems`. */
export function watchPage(p, label, problems) {
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
}

/** A browser context (`DESKTOP`, `PHONE`) with the test's timeout and one watched page. */
export async function openPage(run, options, label) {
  const context = await run.browser.newContext(options);
  context.setDefaultTimeout(TIMEOUT_MS);
  const page = await context.newPage();
  watchPage(page, label, run.problems);
  return { context, page };
}

// ------------------------------------------------------------------------------------------ page helpers

export async function visibleText(locator) {
  return (await locator.allInnerTexts()).join(' | ').replace(/\s+/g, ' ').trim();
}

/** Waits for `selector` to show `text` (string or RegExp); fails with what the page shows instead. */
export async function expectText(page, selector, text) {
  const loc = page.locator(selector).filter({ hasText: text }).first();
  try {
    await loc.waitFor({ state: 'visible', timeout: TIMEOUT_MS });
  } catch {
    const seen = await visibleText(page.locator(selector)).catch(() => '');
    throw new CheckFailed(`expected ${selector} to show ${text} on ${redact(page.url())}; it shows: ${seen ? `"${seen}"` : 'nothing'}`);
  }
}

export function expectPath(page, pathname, search) {
  const u = new URL(page.url());
  check(u.pathname === pathname && (search === undefined || u.search === search), `expected to be on ${pathname}${search ?? ''}, but on ${redact(u.pathname + u.search)}`);
}

export async function goto(page, url, status = 200) {
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp, `no response for ${redact(url)}`);
  check(resp.status() === status, `GET ${redact(new URL(url).pathname)} answered ${resp.status()}, expected ${status}`);
  return resp;
}

/** Clicks a submit button (or a link) and waits for the page the answer (or its redirects) shows. */
export async function submit(page, buttonSelector) {
  const [resp] = await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: TIMEOUT_MS }), page.click(buttonSelector)]);
  return resp;
}

export async function expectFieldErrors(page, field) {
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

/** The sign-in page: login name and password, then Sign in. */
export async function signIn(page, base, loginName, password) {
  await goto(page, `${base}/sign-in`);
  await page.fill('#login_name', loginName);
  await page.fill('#password', password);
  return submit(page, 'main form button[type=submit]');
}

/** The page fits its viewport: nothing scrolls sideways. */
export async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

// ------------------------------------------------------------------------------------------ the run

/**
 * Runs one browser test: a temp dir (`data/` for latchkey, `server.log`, `screenshots/` unless
 * --screenshots sends them to docs/screenshots), `body(run)`, then the clean-up and the verdict.
 * `run` holds the paths, `shoot(page, name, options)`, `problems` (script and console errors of
 * watched pages), and what the run stops at the end: `browser` and `children` (processes, stopped
 * last-started first). `run.page` is the page screenshotted on failure; `run.logs` the logs whose
 * last lines are printed then (the server log is one); `run.cleanOnPass` more paths removed after a
 * pass (the data dir is one). Exit code 0 when every step passes; 1 with the failed step otherwise.
 */
export async function runTest(name, body) {
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `latchkey-${name}-`));
  const dataDir = path.join(tmp, 'data');
  const shotsDir = WRITE_SCREENSHOTS ? path.join(REPO, 'docs', 'screenshots') : path.join(tmp, 'screenshots');
  fs.mkdirSync(dataDir);
  fs.mkdirSync(shotsDir, { recursive: true });
  const run = {
    tmp,
    dataDir,
    outbox: path.join(dataDir, 'outbox'),
    shotsDir,
    serverLog: path.join(tmp, 'server.log'),
    shots: [],
    problems: [],
    browser: null,
    children: [],
    page: null,
    logs: [],
    cleanOnPass: [dataDir],
    /** A screenshot; full page unless `options` says otherwise (`{ fullPage: false }`: the viewport as scrolled). */
    async shoot(p, file, options = {}) {
      await p.screenshot({ path: path.join(shotsDir, file), fullPage: true, animations: 'disabled', caret: 'hide', ...options });
      run.shots.push(file);
      return file;
    },
  };
  run.logs.push({ label: 'server log', file: run.serverLog });
  let ok = false;

  const stopAll = async () => {
    await run.browser?.close().catch(() => {});
    for (const child of [...run.children].reverse()) await stopProcess(child);
  };
  const onSignal = async (sig) => {
    console.error(`\ninterrupted (${sig}); stopping the server`);
    await stopAll();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const show = (p) => (path.relative(process.cwd(), p).startsWith('..') ? p : path.relative(process.cwd(), p));
    console.log(`latchkey ${name}: binary ${show(BIN)}, chromium ${CHROMIUM}, screenshots -> ${show(shotsDir)}`);
    await body(run);
    ok = true;
  } catch (e) {
    process.exitCode = 1;
    console.error(`FAIL ${currentStep}`);
    console.error(`     ${redact(e instanceof CheckFailed ? e.message : e?.stack || e).replace(/\n/g, '\n     ')}`);
    const page = run.page;
    if (page && !page.isClosed()) {
      const file = path.join(tmp, 'failure.png');
      if (await page.screenshot({ path: file, fullPage: true }).then(() => true, () => false)) {
        console.error(`     page at failure: ${redact(page.url())} (screenshot ${file})`);
      }
    }
    for (const { label, file } of run.logs) {
      if (fs.existsSync(file)) console.error(`     ${label} (last lines):\n${tail(file, 15).replace(/^/gm, '       ')}`);
    }
  } finally {
    await stopAll();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    if (ok) {
      console.log(`PASS ${stepNo} steps in ${secs} s; ${run.shots.length} screenshots in ${WRITE_SCREENSHOTS ? path.relative(process.cwd(), shotsDir) || shotsDir : shotsDir}`);
      if (!KEEP_TMP && WRITE_SCREENSHOTS) fs.rmSync(tmp, { recursive: true, force: true });
      else if (!KEEP_TMP) for (const p of run.cleanOnPass) fs.rmSync(p, { recursive: true, force: true });
    } else {
      console.error(`FAILED after ${secs} s; data, logs and screenshots kept in ${tmp}`);
    }
  }
}
