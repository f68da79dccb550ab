#!/usr/bin/env node
// End-to-end test of Latchkey's pages in real headless Chromium, and the README screenshots.
//
//   node tests/browser/e2e.mjs                  # run the test; screenshots go to the temp dir
//   node tests/browser/e2e.mjs --screenshots    # also write docs/screenshots/*.png
//   LATCHKEY_SCREENSHOTS=1 node tests/browser/e2e.mjs   # same as --screenshots
//
// Needs the binary (LATCHKEY_BIN, default target/debug/latchkey: `cargo build -p latchkey`),
// Chromium (CHROMIUM_BIN, default /usr/bin/chromium), `npm ci` in tests/browser, and for the
// two-factor steps Debian's oathtool (the authenticator app) and zbar-tools (reads the QR code);
// scripts/setup.sh installs them.
// Exit code 0 when every step passes; 1 with a message naming the failed step otherwise.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import {
  CheckFailed, DESKTOP, PHONE, SESSION_COOKIE, TIMEOUT_MS,
  check, childEnv, cli, expectFieldErrors, expectPath, expectText, freePort, goto, horizontalOverflow, launchChromium,
  listOutbox, listTexts, openPage, outboxNames, redact, requirePrerequisites, runTest, sleep, startLatchkey, step, submit,
  visibleText, waitForSms, codeInEmail, waitForLink as waitForLinkTo, waitForSubject as waitForSubjectTo, signIn as signInAs,
} from './lib.mjs';

const COMPANY = { name: 'Organization Inc.', domain: 'organization.com' };
const USER = { extension: '101', email: 'alice@example.com', role: 'office-manager' };
const LOGIN_NAME = `${USER.extension}@${COMPANY.domain}`;
const WEAK = { password: 'short', confirmation: 'different', pin: '1234' };
const FIRST_PASSWORD = 'Welcome2Sonar';
const PIN = '2580';
const NEW_PASSWORD = 'Brand2NewPass';

let welcomeLink; // opened twice: to set up, and again once used

// Every email this test waits for goes to the one user.
const waitForLink = (outbox, kind, base, opts) => waitForLinkTo(outbox, kind, base, { to: USER.email, ...opts });
const waitForSubject = (outbox, subject, opts) => waitForSubjectTo(outbox, subject, { to: USER.email, ...opts });
const signIn = (page, base, password) => signInAs(page, base, LOGIN_NAME, password);

// ------------------------------------------------------------------------------------------ two-factor tools

/** Fails with how to install it when a command-line tool the two-factor steps use is missing. */
function requireTool(name, debianPackage) {
  const r = spawnSync(name, ['--version'], { encoding: 'utf8' });
  check(!r.error, `no \`${name}\` on PATH: \`apt-get install -y ${debianPackage}\``);
}

const TOTP_STEP = 30;

/** The authenticator app's code for the 30-s step `step`, by oathtool (an independent implementation); the secret goes on stdin. */
function totpCode(secret, step) {
  const r = spawnSync('oathtool', ['--totp', '--base32', '--digits=6', `--time-step-size=${TOTP_STEP}s`, `--now=@${step * TOTP_STEP}`, '-'], {
    input: `${secret}\n`,
    encoding: 'utf8',
  });
  check(r.status === 0, `oathtool exited with ${r.status ?? r.signal}: ${redact(r.stderr)}`);
  const code = r.stdout.trim();
  check(/^\d{6}$/.test(code), 'oathtool did not print a 6-digit code');
  return code;
}

const stepNow = () => Math.floor(Date.now() / 1000 / TOTP_STEP);

/**
 * A 30-s step after `used` (each step's code is taken once) whose code the server takes now: it
 * accepts the steps next to the current one, so when `used` is already the next step this waits
 * for the clock. Answers the step and the seconds waited.
 */
async function freshTotpStep(used) {
  const t0 = Date.now();
  while (used > stepNow()) await sleep(250);
  return { step: Math.max(used + 1, stepNow()), waited: Math.round((Date.now() - t0) / 1000) };
}

/** What a phone's camera reads from a QR code image: zbarimg (zbar-tools). */
function decodeQr(file) {
  const r = spawnSync('zbarimg', ['--raw', '-q', file], { encoding: 'utf8' });
  check(r.status === 0, `zbarimg found no QR code in ${file} (exit ${r.status ?? r.signal})`);
  return r.stdout.trim();
}

// ------------------------------------------------------------------------------------------ the test

await runTest('e2e', async (run) => {
  const { tmp, dataDir, outbox, problems, shoot } = run;

  // ---------------------------------------------------------------- 1. setup
  let env;
  let base;
  await step('create the company and the user with the CLI', async () => {
    requirePrerequisites();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    env = childEnv(dataDir, port);
    cli(env, ['company', 'create', '--name', COMPANY.name, '--domain', COMPANY.domain]);
    const out = cli(env, ['user', 'create', '--company', COMPANY.domain, '--extension', USER.extension, '--email', USER.email, '--role', USER.role]);
    check(out.includes(LOGIN_NAME), `user create did not print the login name ${LOGIN_NAME}`);
    return `login name ${LOGIN_NAME}, port ${port}`;
  });

  await step('start `latchkey serve` and wait for /readyz', async () => {
    await startLatchkey(run, env, `${base}/readyz`);
    return `${base}`;
  });

  let browser;
  await step('launch headless Chromium', async () => {
    browser = await launchChromium(run);
    return `Chromium ${browser.version()}`;
  });
  const { context: desktop, page } = await openPage(run, DESKTOP, 'desktop');
  run.page = page;

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
  const { context: phone, page: phonePage } = await openPage(run, PHONE, 'phone');
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

  // ---------------------------------------------------------------- 7. two-factor authentication
  const FLOW_COOKIE = '__Host-latchkey_flow';
  const mfaSection = () => page.locator('#mfa-h');
  const mfaFacts = () => page.locator('dl.facts[aria-labelledby="mfa-h"]');
  let secret; // the authenticator app's key: never printed
  let confirmedStep; // the 30-s step of the code that confirmed the set-up: spent
  let recoveryCodes; // never printed
  let keptCode; // one recovery code, used once below

  await step('sign in: My Account has no Multi-Factor Authentication while the company has not turned it on', async () => {
    requireTool('oathtool', 'oathtool');
    requireTool('zbarimg', 'zbar-tools');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/account');
    await expectText(page, 'h2', 'Account Security');
    check((await mfaSection().count()) === 0, 'My Account shows Multi-Factor Authentication although the company has not turned two-factor on');
    check((await page.locator('a[href="/account/two-factor/setup"]').count()) === 0, 'My Account links to the authenticator app set-up although two-factor is off');
    const resp = await page.goto(`${base}/account/two-factor/setup`, { waitUntil: 'load' });
    check(resp?.status() === 403, `the set-up page answered ${resp?.status()} while two-factor is off, expected 403`);
    await expectText(page, 'main', 'not enabled for your organization');
  });

  await step('the operator turns two-factor on with the CLI; My Account, reloaded, shows Multi-Factor Authentication', async () => {
    cli(env, ['company', 'enable', '--domain', COMPANY.domain, '--feature', 'two-factor']);
    await goto(page, `${base}/account`);
    await expectText(page, 'h3#mfa-h', 'Multi-Factor Authentication');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dt', 'Authenticator app');
    const link = mfaFacts().locator('a[href="/account/two-factor/setup"]');
    check((await link.count()) === 1, 'the Multi-Factor Authentication section has no link to /account/two-factor/setup');
    check(/set up authenticator app/i.test(await link.innerText()), `the set-up link reads "${await link.innerText()}"`);
    check((await mfaFacts().locator('dt', { hasText: 'Recovery codes' }).count()) === 0, 'recovery codes are listed before any method is set up');
  });

  await step('"Set up authenticator app" -> QR code and the key to type; the QR holds that key, the issuer and the login name', async () => {
    await submit(page, 'dl.facts[aria-labelledby="mfa-h"] a[href="/account/two-factor/setup"]');
    expectPath(page, '/account/two-factor/setup');
    await expectText(page, 'h1', 'Set up the authenticator app');
    const qr = page.locator('.qr[role=img] svg');
    check((await qr.count()) === 1, 'the set-up page has no inline SVG QR code in .qr[role=img]');
    check(((await page.locator('.qr').getAttribute('aria-label')) || '').length > 0, 'the QR code has no aria-label');
    secret = (await page.locator('code.secret').innerText()).replace(/\s+/g, '');
    check(/^[A-Z2-7]{16,}$/.test(secret), 'the key shown for typing in is not base32 (A-Z, 2-7), at least 16 characters');
    const box = await qr.boundingBox();
    check(box && box.width >= 150 && box.height >= 150, `the QR code is drawn ${box?.width}x${box?.height} px: too small to scan`);
    const qrFile = path.join(tmp, 'totp-qr.png'); // holds the secret: never in docs/
    await qr.screenshot({ path: qrFile, animations: 'disabled' });
    let uri;
    try {
      uri = decodeQr(qrFile);
    } finally {
      fs.rmSync(qrFile, { force: true });
    }
    const m = /^otpauth:\/\/totp\/([^?]+)\?(.+)$/.exec(uri);
    check(m, `the QR code does not hold an otpauth://totp/ URI: ${redact(uri).slice(0, 80)}`);
    const label = decodeURIComponent(m[1]);
    const params = new URLSearchParams(m[2]);
    const issuer = params.get('issuer');
    check(params.get('secret') === secret, 'the secret in the QR code is not the key shown for typing in');
    check(issuer && issuer.includes(COMPANY.name), `the QR code's issuer is "${issuer}", expected it to name ${COMPANY.name}`);
    check(label === `${issuer}:${LOGIN_NAME}`, `the QR code's label is "${label}", expected "${issuer}:${LOGIN_NAME}"`);
    const algo = params.get('algorithm');
    check((algo ?? 'SHA1') === 'SHA1' && (params.get('digits') ?? '6') === '6' && (params.get('period') ?? '30') === '30',
      `the QR code asks for ${algo}/${params.get('digits')} digits/${params.get('period')} s, expected SHA1/6/30`);
    check((await page.locator('#code').getAttribute('autocomplete')) === 'one-time-code', 'the code field is not autocomplete="one-time-code"');
    await page.locator('#current_password').waitFor();
    return `issuer "${issuer}", label "${label}", ${secret.length}-character key; ${await shoot(page, 'totp-setup.png')}`;
  });

  await step('enter the app\'s code and the current password -> Save -> "Save your recovery codes" with 10 codes', async () => {
    const before = new Set(listOutbox(outbox).map((m) => m.name));
    confirmedStep = stepNow();
    await page.fill('#code', totpCode(secret, confirmedStep));
    await page.fill('#current_password', NEW_PASSWORD);
    const resp = await submit(page, 'main form button:has-text("Save")');
    check(resp?.status() === 200, `saving the authenticator app answered ${resp?.status()}, expected 200`);
    await expectText(page, 'h1', 'Save your recovery codes');
    recoveryCodes = (await page.locator('ol.codes li code').allInnerTexts()).map((c) => c.trim());
    check(recoveryCodes.length === 10, `expected 10 recovery codes, found ${recoveryCodes.length}`);
    check(recoveryCodes.every((c) => /^[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}$/.test(c)), 'a recovery code is not of the form xxxx-xxxx-xxxx');
    check(new Set(recoveryCodes).size === 10, 'two recovery codes are the same');
    keptCode = recoveryCodes[3];
    const mail = await waitForSubject(outbox, /two-factor authentication method added/i, { after: before });
    check(/authenticator app/i.test(mail.text), 'the "method added" email does not name the authenticator app');
    return `email "${mail.subject}"; ${await shoot(page, 'recovery-codes.png')}`;
  });

  await step('recovery codes: Download (.txt) saves the 10 codes; the Copy box holds them; the printout is the codes alone', async () => {
    const link = page.locator('main a.button', { hasText: 'Download' });
    check((await link.count()) === 1, 'the recovery codes page has no Download button');
    check(/\.txt$/.test((await link.getAttribute('download')) || ''), `the Download link's file name is "${await link.getAttribute('download')}", expected .txt`);
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: TIMEOUT_MS }), link.click()]);
    check(/\.txt$/.test(download.suggestedFilename()), `the download is named "${download.suggestedFilename()}", expected .txt`);
    const saved = await download.path();
    check(saved, `the download failed: ${await download.failure()}`);
    const txt = fs.readFileSync(saved, 'utf8');
    check(recoveryCodes.every((c) => txt.includes(c)), 'the downloaded .txt does not hold all 10 codes');
    check(txt.includes(LOGIN_NAME), 'the downloaded .txt does not name the login name');
    expectPath(page, '/account/two-factor/setup'); // the download did not navigate away
    const copy = page.locator('textarea#codes-copy');
    check((await copy.count()) === 1 && (await copy.getAttribute('readonly')) !== null, 'no read-only Copy box (textarea#codes-copy)');
    await expectText(page, 'label[for="codes-copy"]', 'Copy');
    const copied = (await copy.inputValue()).split('\n').map((l) => l.trim()).filter(Boolean);
    check(JSON.stringify(copied) === JSON.stringify(recoveryCodes), 'the Copy box does not hold exactly the 10 codes, one a line');
    await page.emulateMedia({ media: 'print' });
    try {
      check(await page.locator('ol.codes').isVisible(), 'the codes are hidden in the printout');
      check(!(await copy.isVisible()) && !(await link.isVisible()), 'the printout still shows the Copy box or the Download button');
    } finally {
      await page.emulateMedia({ media: null });
    }
    return `${download.suggestedFilename()}, ${txt.split('\n').length} lines`;
  });

  await step('Continue -> My Account: authenticator app On, 10 recovery codes left', async () => {
    await submit(page, 'main a:has-text("Continue")');
    expectPath(page, '/account', '?done=two-factor');
    await expectText(page, '.alert.success', 'authenticator app is set up');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd', 'On');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*10 left\s*$/);
    return await shoot(page, 'account-two-factor.png');
  });

  await step('sign out; sign in with the password -> "Verify it\'s you", authenticator app pre-selected, no session yet', async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/sign-in/second-factor');
    await expectText(page, 'h1', "Verify it's you");
    const checked = page.locator('fieldset.choices input[name=method]:checked');
    check((await checked.count()) === 1 && (await checked.getAttribute('value')) === 'totp', `the pre-selected method is "${await checked.first().getAttribute('value').catch(() => 'none')}", expected totp`);
    await expectText(page, 'fieldset.choices label:has(input[value=totp])', 'Authenticator app');
    await expectText(page, 'fieldset.choices label:has(input[value=recovery_code])', /use a recovery code/i);
    const cookies = await desktop.cookies(base);
    check(!cookies.some((k) => k.name === SESSION_COOKIE), 'the password alone gave a session cookie');
    const flow = cookies.find((k) => k.name === FLOW_COOKIE);
    check(flow && flow.httpOnly && flow.secure, `no HttpOnly, Secure ${FLOW_COOKIE} cookie for the waiting sign-in`);
    return await shoot(page, 'second-factor.png');
  });

  let signInCode;
  let lastTotpStep; // the latest 30-s step whose code the server took: spent
  await step("enter the app's next code -> Verify -> My Account, signed in", async () => {
    lastTotpStep = Math.max(confirmedStep + 1, stepNow());
    signInCode = totpCode(secret, lastTotpStep);
    await page.fill('#code', signInCode);
    await submit(page, 'main form button:has-text("Verify")');
    expectPath(page, '/account');
    await expectText(page, 'table.sessions tbody tr', 'This session');
    const cookies = await desktop.cookies(base);
    check(cookies.some((k) => k.name === SESSION_COOKIE), 'no session cookie after the second factor');
    check(!cookies.some((k) => k.name === FLOW_COOKIE), `the ${FLOW_COOKIE} cookie is still there after signing in`);
  });

  await step('sign out; sign in; the same app code again is refused ("already used")', async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/sign-in/second-factor');
    await page.fill('#code', signInCode);
    const resp = await submit(page, 'main form button:has-text("Verify")');
    check(resp?.status() === 401, `the replayed code answered ${resp?.status()}, expected 401`);
    expectPath(page, '/sign-in/second-factor');
    await expectText(page, '.alert.error', /already used/i);
    check(!(await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE), 'the replayed code gave a session cookie');
  });

  await step('choose "Use a recovery code", enter a kept code -> My Account, 9 recovery codes left', async () => {
    const before = new Set(listOutbox(outbox).map((m) => m.name));
    await page.check('fieldset.choices input[value=recovery_code]');
    await page.fill('#code', keptCode);
    await submit(page, 'main form button:has-text("Verify")');
    expectPath(page, '/account');
    await expectText(page, 'table.sessions tbody tr', 'This session');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*9 left\s*$/);
    const mail = await waitForSubject(outbox, /recovery code was used/i, { after: before });
    check(/9 left/.test(mail.text), 'the "recovery code was used" email does not say 9 are left');
    return `email "${mail.subject}"`;
  });

  await step('sign out; the same recovery code again is refused with a clear message', async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/sign-in/second-factor');
    await page.check('fieldset.choices input[value=recovery_code]');
    await page.fill('#code', keptCode);
    const resp = await submit(page, 'main form button:has-text("Verify")');
    check(resp?.status() === 401, `the used recovery code answered ${resp?.status()}, expected 401`);
    expectPath(page, '/sign-in/second-factor');
    await expectText(page, '.alert.error', /recovery code is not right or was already used/i);
    check((await page.locator('fieldset.choices input[name=method]:checked').getAttribute('value')) === 'recovery_code', 'the refused page forgot the chosen method');
    check(!(await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE), 'the used recovery code gave a session cookie');
    return `"${await visibleText(page.locator('.alert.error'))}"`;
  });

  await step('on a 390x844 phone: the "Verify it\'s you" page fits the screen', async () => {
    await signIn(phonePage, base, NEW_PASSWORD);
    expectPath(phonePage, '/sign-in/second-factor');
    await expectText(phonePage, 'h1', "Verify it's you");
    const overflow = await horizontalOverflow(phonePage);
    const shot = await shoot(phonePage, 'second-factor-phone.png');
    check(overflow <= 0, `the second-factor page scrolls sideways on a 390 px phone by ${overflow} px`);
    return shot;
  });

  // ---------------------------------------------------------------- 8. texted codes, the default method, new recovery codes, removing a method
  const PHONE_NUMBER = { typed: '+1 555 010 4477', e164: '+15550104477', masked: '•••• 4477' };
  const methodRow = (label) => page.locator(`dl.facts[aria-labelledby="mfa-h"] dt:text-is("${label}") + dd`);
  const SMS_LABEL = 'Text message (SMS)';
  let oldKeptCode; // a recovery code of the first set, kept to show it stops working once replaced
  let newCodes; // the replacement set: never printed

  await step('on the waiting page, another kept recovery code -> My Account, 8 recovery codes left', async () => {
    oldKeptCode = recoveryCodes[5];
    check(oldKeptCode !== keptCode, 'the two kept recovery codes are the same');
    await page.check('fieldset.choices input[value=recovery_code]');
    await page.fill('#code', recoveryCodes[4]);
    await submit(page, 'main form button:has-text("Verify")');
    expectPath(page, '/account');
    await expectText(page, 'table.sessions tbody tr', 'This session');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*8 left\s*$/);
    check((await page.locator('select#preferred').count()) === 0, 'My Account offers a default method to choose with only one method on');
  });

  await step('"Set up text messages" -> a number without the country code shows an error next to the field', async () => {
    const link = methodRow(SMS_LABEL).locator('a[href="/account/two-factor/sms"]');
    check((await link.count()) === 1, `the ${SMS_LABEL} row has no link to /account/two-factor/sms`);
    check(/set up text messages/i.test(await link.innerText()), `the SMS set-up link reads "${await link.innerText()}"`);
    await submit(page, 'dl.facts[aria-labelledby="mfa-h"] a[href="/account/two-factor/sms"]');
    expectPath(page, '/account/two-factor/sms');
    await expectText(page, 'h1', 'Set up text messages');
    check((await page.locator('#phone').getAttribute('type')) === 'tel', 'the phone field is not type="tel"');
    check((await page.locator('#code').count()) === 0, 'the SMS set-up page asks for a code before one was sent');
    const before = outboxNames(outbox);
    await page.fill('#phone', '555 010 4477');
    const resp = await submit(page, 'main form button:has-text("Text me a code")');
    check(resp?.status() === 422, `the number without + answered ${resp?.status()}, expected 422`);
    const errors = await expectFieldErrors(page, 'phone');
    check(errors.some((m) => /international format/i.test(m)), `the phone error should ask for the international format; got ${JSON.stringify(errors)}`);
    check(listTexts(outbox).every((t) => before.has(t.name)), 'a text was sent to the refused number');
    return `"${errors.join(' ')}"`;
  });

  let smsCode;
  await step(`enter ${PHONE_NUMBER.typed} -> "Text me a code" -> the text to ${PHONE_NUMBER.e164} arrives; the page asks for its code`, async () => {
    const before = outboxNames(outbox);
    await page.fill('#phone', PHONE_NUMBER.typed);
    const resp = await submit(page, 'main form button:has-text("Text me a code")');
    check(resp?.status() === 200, `sending the code answered ${resp?.status()}, expected 200`);
    await expectText(page, '.alert.success', `We sent a code to ${PHONE_NUMBER.masked}`);
    check(!(await page.locator('.alert.success').innerText()).includes('010'), 'the notice shows more of the number than its last 4 digits');
    const sms = await waitForSms(outbox, 'SMS set-up', { after: before });
    check(sms.to === PHONE_NUMBER.e164, `the text went to "${sms.to}", expected ${PHONE_NUMBER.e164}`);
    check(sms.body.includes(COMPANY.name), 'the text does not name the company');
    check(listOutbox(outbox).every((m) => before.has(m.name)), 'sending a text also sent an email');
    smsCode = sms.code;
    check((await page.locator('#code').getAttribute('autocomplete')) === 'one-time-code', 'the code field is not autocomplete="one-time-code"');
    await page.locator('main form button:has-text("Turn on SMS codes")').waitFor();
    await expectText(page, 'main form button', 'Send a new code');
    return `"${sms.body.replace(/^\d{6}/, '<code>')}"; ${await shoot(page, 'sms-setup.png')}`;
  });

  await step(`enter the texted code -> "Turn on SMS codes" -> My Account: ${SMS_LABEL} On, ${PHONE_NUMBER.masked}`, async () => {
    const before = outboxNames(outbox);
    await page.fill('#code', smsCode);
    await submit(page, 'main form button:has-text("Turn on SMS codes")');
    expectPath(page, '/account', '?done=two-factor-sms');
    await expectText(page, '.alert.success', 'Text message codes are on');
    const row = methodRow(SMS_LABEL);
    await expectText(page, `dl.facts[aria-labelledby="mfa-h"] dt:text-is("${SMS_LABEL}") + dd`, PHONE_NUMBER.masked);
    check((await row.locator('.badge', { hasText: 'On' }).count()) === 1, `the ${SMS_LABEL} row has no "On" badge`);
    check((await row.locator('a[href="/account/two-factor/remove/sms"]').count()) === 1, `the ${SMS_LABEL} row has no Remove link`);
    check(!(await row.innerText()).includes('010'), 'My Account shows more of the number than its last 4 digits');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*8 left\s*$/); // a second method keeps the codes
    const mail = await waitForSubject(outbox, /two-factor authentication method added/i, { after: before });
    check(/\bSMS\b|text message/i.test(mail.text), 'the "method added" email does not name SMS (text messages)');
    return `email "${mail.subject}"`;
  });

  await step('"Default method at sign-in": choose Text message -> Save -> "Your default method was saved."', async () => {
    const select = page.locator('select#preferred');
    check((await select.count()) === 1, 'My Account has no select#preferred with two methods on');
    const options = await select.locator('option').evaluateAll((os) => os.map((o) => o.value));
    check(JSON.stringify([...options].sort()) === JSON.stringify(['sms', 'totp']), `the default method options are ${JSON.stringify(options)}, expected sms and totp`);
    await expectText(page, 'label[for="preferred"]', 'Default method at sign-in');
    await select.selectOption('sms');
    await submit(page, 'form[action="/account/two-factor/preferred"] button:has-text("Save")');
    expectPath(page, '/account', '?done=preferred');
    await expectText(page, '.alert.success', 'Your default method was saved.');
    check((await page.locator('select#preferred').inputValue()) === 'sms', 'after saving, the select does not show Text message');
  });

  await step('sign out; sign in -> Text message pre-selected; "Text me a code" -> "We sent a code to •••• 4477"', async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/sign-in/second-factor');
    const checked = page.locator('fieldset.choices input[name=method]:checked');
    check((await checked.getAttribute('value')) === 'sms', `the pre-selected method is "${await checked.getAttribute('value')}", expected sms`);
    await expectText(page, 'fieldset.choices label:has(input[value=sms])', SMS_LABEL);
    const send = page.locator('form[action="/sign-in/second-factor/send"] button');
    check((await send.count()) === 1, `expected one "send me a code" button (SMS only), found ${await send.count()}`);
    check((await send.innerText()).trim() === 'Text me a code', `the send button reads "${await send.innerText()}"`);
    const before = outboxNames(outbox);
    const resp = await submit(page, 'form[action="/sign-in/second-factor/send"] button:has-text("Text me a code")');
    check(resp?.status() === 200, `"Text me a code" answered ${resp?.status()}, expected 200`);
    await expectText(page, '.alert.success', `We sent a code to ${PHONE_NUMBER.masked}`);
    check((await checked.getAttribute('value')) === 'sms', 'after sending, Text message is no longer selected');
    const sms = await waitForSms(outbox, 'sign-in', { after: before });
    check(sms.to === PHONE_NUMBER.e164, `the sign-in text went to "${sms.to}", expected ${PHONE_NUMBER.e164}`);
    check(/sign-in code/.test(sms.body), 'the sign-in text does not say it is a sign-in code');
    smsCode = sms.code;
    check(!(await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE), 'sending a code gave a session cookie');
    return `"${await visibleText(page.locator('.alert.success'))}"`;
  });

  await step('enter the texted code -> Verify -> My Account, signed in', async () => {
    await page.fill('#code', smsCode);
    await submit(page, 'main form button:has-text("Verify")');
    expectPath(page, '/account');
    await expectText(page, 'table.sessions tbody tr', 'This session');
    check((await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE), 'no session cookie after the texted code');
  });

  await step('"Get new recovery codes" with a code from the authenticator app -> 10 new codes, none of the old ones', async () => {
    await submit(page, 'dl.facts[aria-labelledby="mfa-h"] a[href="/account/recovery-codes"]');
    expectPath(page, '/account/recovery-codes');
    await expectText(page, 'h1', 'Get new recovery codes');
    await expectText(page, '.field:has(#code) .hint', /authenticator app/i);
    await page.locator('main form button:has-text("Email me a verification code")').waitFor();
    const before = outboxNames(outbox);
    const { step: s, waited } = await freshTotpStep(lastTotpStep);
    await page.fill('#code', totpCode(secret, s));
    const resp = await submit(page, 'form[action="/account/recovery-codes"] button:has-text("Get new recovery codes")');
    check(resp?.status() === 200, `getting new recovery codes answered ${resp?.status()}, expected 200`);
    lastTotpStep = s;
    await expectText(page, 'h1', 'Save your recovery codes');
    newCodes = (await page.locator('ol.codes li code').allInnerTexts()).map((c) => c.trim());
    check(newCodes.length === 10, `expected 10 new recovery codes, found ${newCodes.length}`);
    check(new Set(newCodes).size === 10, 'two new recovery codes are the same');
    check(newCodes.every((c) => !recoveryCodes.includes(c)), 'a new recovery code is one of the old ones');
    const mail = await waitForSubject(outbox, /new recovery codes/i, { after: before });
    check(!newCodes.some((c) => mail.text.includes(c) || mail.html.includes(c)), 'the "new recovery codes" email holds a code');
    return `email "${mail.subject}"${waited ? `; waited ${waited} s for a fresh app code` : ''}`;
  });

  await step('the recovery codes page\'s script shows Copy and Print: Copy puts the 10 codes on the clipboard, Print prints', async () => {
    const copy = page.locator('button[data-copy]');
    const print = page.locator('button[data-print]');
    check((await copy.count()) === 1 && (await print.count()) === 1, 'the recovery codes page has no Copy (button[data-copy]) or Print (button[data-print]) button');
    check(await copy.isVisible(), 'the Copy button is hidden: /static/latchkey.js did not run');
    check(await print.isVisible(), 'the Print button is hidden: /static/latchkey.js did not run');
    await desktop.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    await copy.click();
    try {
      await page.waitForFunction(() => document.querySelector('button[data-copy]').textContent.trim() !== 'Copy', null, { timeout: TIMEOUT_MS });
    } catch {
      throw new CheckFailed('the Copy button did not react to the click');
    }
    const label = (await copy.innerText()).trim();
    check(label === 'Copied', `after the click the Copy button reads "${label}", expected "Copied"`);
    const clip = (await page.evaluate(() => navigator.clipboard.readText())).split('\n').map((l) => l.trim()).filter(Boolean);
    check(JSON.stringify(clip) === JSON.stringify(newCodes), 'the clipboard does not hold exactly the 10 new codes, one a line');
    await page.evaluate(() => {
      window.__printed = 0;
      window.print = () => (window.__printed += 1); // the real dialog would block a headless page
    });
    await print.click();
    check((await page.evaluate(() => window.__printed)) === 1, 'the Print button did not call window.print()');
    await page.emulateMedia({ media: 'print' });
    try {
      check(!(await copy.isVisible()) && !(await print.isVisible()), 'the printout shows the Copy or Print button');
      check(await page.locator('ol.codes').isVisible(), 'the codes are hidden in the printout');
    } finally {
      await page.emulateMedia({ media: null });
    }
    return `clipboard: ${clip.length} codes`;
  });

  await step('Continue -> My Account: 10 recovery codes left', async () => {
    await submit(page, 'main a:has-text("Continue")');
    expectPath(page, '/account', '?done=recovery-codes');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*10 left\s*$/);
    await expectText(page, '.alert.success', 'new recovery codes are ready');
    return `notice "${await visibleText(page.locator('.alert.success'))}"`;
  });

  let removalCode;
  await step(`${SMS_LABEL} "Remove" -> "Email me a verification code" -> the code arrives by email`, async () => {
    await submit(page, `dl.facts[aria-labelledby="mfa-h"] dt:text-is("${SMS_LABEL}") + dd a[href="/account/two-factor/remove/sms"]`);
    expectPath(page, '/account/two-factor/remove/sms');
    await expectText(page, 'h1', 'Remove a two-factor method');
    await expectText(page, '.lead', /text message/i);
    await expectText(page, '.lead', USER.email);
    const before = outboxNames(outbox);
    const resp = await submit(page, 'main form button:has-text("Email me a verification code")');
    check(resp?.status() === 200, `"Email me a verification code" answered ${resp?.status()}, expected 200`);
    await expectText(page, '.alert.success', `We sent a code to ${USER.email}`);
    const mail = await waitForSubject(outbox, /your verification code/i, { after: before });
    removalCode = codeInEmail(mail, 'verification code');
    check(listTexts(outbox).every((t) => before.has(t.name)), 'the verification code was also texted');
    await page.locator('main form button.danger:has-text("Remove")').waitFor();
    return `email "${mail.subject}"; ${await shoot(page, 'remove-method.png')}`;
  });

  await step('enter the emailed code -> Remove -> "The method was removed."; "Set up text messages" again; security email', async () => {
    const before = outboxNames(outbox);
    await page.fill('#code', removalCode);
    await submit(page, 'main form button:has-text("Remove")');
    expectPath(page, '/account', '?done=two-factor-removed');
    await expectText(page, '.alert.success', 'The method was removed.');
    const row = methodRow(SMS_LABEL);
    check((await row.locator('a[href="/account/two-factor/sms"]', { hasText: 'Set up text messages' }).count()) === 1, `the ${SMS_LABEL} row does not offer "Set up text messages" again`);
    check((await row.locator('.badge', { hasText: 'On' }).count()) === 0 && !(await row.innerText()).includes('4477'), `the ${SMS_LABEL} row still shows the number as on`);
    check((await page.locator('select#preferred').count()) === 0, 'My Account still offers a default method with one method left');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*10 left\s*$/);
    const mail = await waitForSubject(outbox, /two-factor authentication method removed/i, { after: before });
    check(/\bSMS\b|text message/i.test(mail.text), 'the "method removed" email does not name SMS (text messages)');
    return `email "${mail.subject}"`;
  });

  await step('sign out; sign in -> the app pre-selected again; an old recovery code is refused, a new one signs in (9 left)', async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    await signIn(page, base, NEW_PASSWORD);
    expectPath(page, '/sign-in/second-factor');
    const checked = page.locator('fieldset.choices input[name=method]:checked');
    check((await checked.getAttribute('value')) === 'totp', `the pre-selected method is "${await checked.getAttribute('value')}", expected totp once SMS is gone`);
    check((await page.locator('fieldset.choices input[value=sms]').count()) === 0, 'the second-factor page still offers Text message');
    check((await page.locator('form[action="/sign-in/second-factor/send"]').count()) === 0, 'the second-factor page still offers "Text me a code"');
    await page.check('fieldset.choices input[value=recovery_code]');
    await page.fill('#code', oldKeptCode);
    const resp = await submit(page, 'main form button:has-text("Verify")');
    check(resp?.status() === 401, `a recovery code of the replaced set answered ${resp?.status()}, expected 401`);
    await expectText(page, '.alert.error', /recovery code is not right or was already used/i);
    check(!(await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE), 'a replaced recovery code gave a session cookie');
    await page.check('fieldset.choices input[value=recovery_code]');
    await page.fill('#code', newCodes[0]);
    await submit(page, 'main form button:has-text("Verify")');
    expectPath(page, '/account');
    await expectText(page, 'table.sessions tbody tr', 'This session');
    await expectText(page, 'dl.facts[aria-labelledby="mfa-h"] dd span.left', /^\s*9 left\s*$/);
  });

  await step('no script or console errors in the pages', async () => {
    check(problems.length === 0, problems.join('\n'));
  });

  await phone.close();
});
