#!/usr/bin/env node
// The office manager's console in real headless Chromium, and the README's console screenshots.
//
//   node tests/browser/console.mjs                  # run the test; screenshots go to the temp dir
//   node tests/browser/console.mjs --screenshots    # also write docs/screenshots/console-*.png
//   node tests/browser/console.mjs --keep           # keep the temp dir (data, logs) after a pass
//
// Needs the binary (LATCHKEY_BIN, default target/debug/latchkey), Chromium (CHROMIUM_BIN), `npm ci`
// in tests/browser and `oathtool` (scripts/setup.sh installs them).
//
// An office manager, a call center supervisor and a user with the authenticator app are made with
// the CLI and the JSON API; then, in Chromium, the office manager goes from My Account to the
// console, creates a user (a wrong email first), searches, requires two-factor authentication,
// resets the user's two-factor authentication (who must then enrol again at sign-in), reads the
// audit log and exports it as CSV; the supervisor sees the same pages without a form.
//
// Exit code 0 when every step passes; 1 with a message naming the failed step otherwise.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

import {
  DESKTOP, PHONE,
  check, childEnv, cliRun, expectFieldErrors, expectPath, expectText, freePort, goto, horizontalOverflow, launchChromium, openPage,
  outboxNames, redact, requirePrerequisites, runTest, signIn, startLatchkey, step, submit, visibleText, waitForLink, waitForSubject,
} from './lib.mjs';

const COMPANY = { name: 'Organization Inc.', domain: 'organization.com' };
const PASSWORD = 'Welcome2Sonar';
const PIN = '2580';
const OM = { extension: '100', email: 'office.manager@example.com', role: 'office-manager' };
const SUPERVISOR = { extension: '200', email: 'supervisor@example.com', role: 'supervisor' };
const ALICE = { extension: '101', email: 'alice@example.com', role: 'user' };
const NEW_USER = { extension: '102', email: 'bob@example.com' };
const login = (u) => `${u.extension}@${COMPANY.domain}`;

/** The authenticator app: oathtool's code for now (the secret on stdin, never in argv). */
function totpNow(secret) {
  const r = spawnSync('oathtool', ['--totp', '--base32', '--digits=6', '-'], { input: `${secret}\n`, encoding: 'utf8' });
  check(r.status === 0, `oathtool exited with ${r.status ?? r.signal}: ${redact(r.stderr)}`);
  return r.stdout.trim();
}

/** A JSON API client with its own session cookie, as an app would be. */
class ApiClient {
  constructor(base) {
    this.base = base;
    this.cookie = '';
    this.csrf = '';
  }

  async call(method, path, body) {
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.cookie) headers.cookie = this.cookie;
    if (this.csrf) headers['x-csrf-token'] = this.csrf;
    const r = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const set = r.headers.getSetCookie().find((c) => c.includes('latchkey_session='));
    if (set) this.cookie = set.split(';')[0];
    const text = await r.text();
    return { status: r.status, json: text ? JSON.parse(text) : null };
  }

  async signIn(u) {
    const a = await this.call('POST', '/api/v1/sign-in', { login_name: login(u), password: PASSWORD });
    check(a.status === 200 && a.json.state === 'signed_in', `API sign-in of ${login(u)}: ${a.status} ${JSON.stringify(a.json)}`);
    this.csrf = a.json.csrf_token;
  }
}

await runTest('console', async (run) => {
  const { dataDir, outbox, shoot } = run;
  let env;
  let base;
  const setupLinks = {};

  // ---------------------------------------------------------------- setup
  await step('create the company (two-factor pilot on), an office manager, a supervisor and a user with the CLI', async () => {
    requirePrerequisites();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    env = childEnv(dataDir, port);
    cliRun(env, ['company', 'create', '--name', COMPANY.name, '--domain', COMPANY.domain]);
    cliRun(env, ['company', 'enable', '--domain', COMPANY.domain, '--feature', 'two-factor']);
    for (const u of [OM, SUPERVISOR, ALICE]) {
      const { stderr } = cliRun(env, ['user', 'create', '--company', COMPANY.domain, '--extension', u.extension, '--email', u.email, '--role', u.role]);
      const link = /Complete Setup link: (\S+)/.exec(stderr)?.[1];
      check(link, `user create printed no Complete Setup link for ${login(u)}`);
      setupLinks[u.extension] = link;
    }
    return `port ${port}`;
  });

  await step('start `latchkey serve`; each account completes setup through the API', async () => {
    await startLatchkey(run, env, `${base}/readyz`);
    for (const u of [OM, SUPERVISOR, ALICE]) {
      const token = setupLinks[u.extension].split('/').pop();
      const r = await new ApiClient(base).call('POST', `/api/v1/activation/${token}`, { password: PASSWORD, password_confirmation: PASSWORD, pin: PIN });
      check(r.status === 200, `Complete Setup of ${login(u)}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    return base;
  });

  await step(`${login(ALICE)} sets up the authenticator app through the API (codes by oathtool)`, async () => {
    const api = new ApiClient(base);
    await api.signIn(ALICE);
    const setup = await api.call('POST', '/api/v1/me/2fa/totp');
    check(setup.status === 200, `TOTP setup: ${setup.status}`);
    const confirmed = await api.call('POST', '/api/v1/me/2fa/totp/confirm', { code: totpNow(setup.json.secret), current_password: PASSWORD });
    check(confirmed.status === 200, `TOTP confirm: ${confirmed.status} ${JSON.stringify(confirmed.json)}`);
    return `${confirmed.json.recovery_codes.length} recovery codes`;
  });

  await step('launch headless Chromium', async () => `Chromium ${(await launchChromium(run)).version()}`);
  const { context: desktop, page } = await openPage(run, DESKTOP, 'office manager');
  run.page = page;

  // ---------------------------------------------------------------- the office manager
  await step('the office manager signs in; My Account -> "Company console" -> the users list', async () => {
    await signIn(page, base, login(OM), PASSWORD);
    expectPath(page, '/account');
    await submit(page, 'a:has-text("Company console")');
    expectPath(page, '/console/users');
    await expectText(page, 'nav.tabs a[aria-current=page]', 'Users');
    const rows = await visibleText(page.locator('table.list tbody'));
    for (const u of [OM, SUPERVISOR, ALICE]) check(rows.includes(login(u)), `the users list lacks ${login(u)}: "${rows}"`);
    check(/Authenticator app/.test(rows), `the users list does not show Alice's authenticator app: "${rows}"`);
    return shoot(page, 'console-users.png');
  });

  await step('create a user: a wrong email shows its error next to the field; then the user is created and the welcome email sent', async () => {
    const before = outboxNames(outbox);
    await page.fill('#extension', NEW_USER.extension);
    await page.fill('#designated_email', 'bob@');
    await submit(page, 'button:has-text("Create user")');
    const errors = await expectFieldErrors(page, 'designated_email');
    await page.fill('#designated_email', NEW_USER.email);
    await submit(page, 'button:has-text("Create user")');
    expectPath(page, `/console/users/${NEW_USER.extension}`);
    await expectText(page, '.alert.success', NEW_USER.email);
    await expectText(page, '.badge', 'Invited');
    const { mail } = await waitForLink(outbox, 'complete-setup', base, { after: before, to: NEW_USER.email });
    return `first refused: "${errors[0]}"; welcome "${mail.subject}"`;
  });

  await step('search by part of an email finds that user alone', async () => {
    await goto(page, `${base}/console/users`);
    await page.fill('#q', 'bob@');
    await submit(page, 'form[role=search] button');
    const rows = page.locator('table.list tbody tr');
    check((await rows.count()) === 1, `expected one row for "bob@", got ${await rows.count()}`);
    await expectText(page, 'table.list tbody', login(NEW_USER));
    return 'one row';
  });

  // ---------------------------------------------------------------- the supervisor
  await step('the supervisor (before 2FA is required) reads the same pages without a single form', async () => {
    const { context, page: sup } = await openPage(run, DESKTOP, 'supervisor');
    await signIn(sup, base, login(SUPERVISOR), PASSWORD);
    for (const path of ['/console/users', `/console/users/${ALICE.extension}`, '/console/policy']) {
      await goto(sup, `${base}${path}`);
      await expectText(sup, '.badge', 'Read-only');
      const forms = await sup.locator('main form[method=post]').count();
      check(forms === 0, `${path} shows the supervisor ${forms} form(s)`);
    }
    await context.close();
    return 'read-only';
  });

  // ---------------------------------------------------------------- the policy and a reset
  await step('security policy: require two-factor authentication with the app or email, the app by default', async () => {
    await submit(page, 'nav.tabs a:has-text("Security policy")');
    await page.check('input[name=two_factor][value=required]');
    await page.check('input[name=allow_totp]');
    await page.check('input[name=allow_email]');
    await page.selectOption('#default_method', 'totp');
    await submit(page, 'button:has-text("Save two-factor rules")');
    await expectText(page, '.alert.success', 'two-factor rules were saved');
    check(await page.isChecked('input[name=two_factor][value=required]'), 'Required is not selected after saving');
    check((await page.inputValue('#default_method')) === 'totp', 'the default method did not stay the app');
    return shoot(page, 'console-policy.png');
  });

  await step(`reset ${login(ALICE)}'s two-factor authentication from her page; she is told by email`, async () => {
    const before = outboxNames(outbox);
    await goto(page, `${base}/console/users/${ALICE.extension}`);
    await expectText(page, '.facts', 'Authenticator app');
    await submit(page, 'button:has-text("Reset 2FA")');
    await expectText(page, '.alert.success', /reset/i);
    const methods = await visibleText(page.locator('.facts dt:has-text("2FA methods") + dd'));
    check(methods === 'None', `after the reset her methods show "${methods}"`);
    const mail = await waitForSubject(outbox, /two-factor authentication was reset/i, { after: before, to: ALICE.email });
    return `${await shoot(page, 'console-user.png')}; "${mail.subject}"`;
  });

  await step('Alice signs in: the company requires 2FA and she has none, so she must set it up again', async () => {
    const { context, page: alice } = await openPage(run, DESKTOP, 'alice');
    await signIn(alice, base, login(ALICE), PASSWORD);
    expectPath(alice, '/account/two-factor/enroll');
    await context.close();
    return 'on the enrolment page';
  });

  await step('the audit log shows the reset and the policy change, by the office manager', async () => {
    await goto(page, `${base}/console/audit`);
    const table = await visibleText(page.locator('table.list tbody'));
    for (const what of [/two-factor/i, /policy/i, login(OM), login(ALICE)]) {
      check(typeof what === 'string' ? table.includes(what) : what.test(table), `the audit log lacks ${what}: "${table.slice(0, 400)}"`);
    }
    return shoot(page, 'console-audit.png');
  });

  await step('filter the audit log to the 2FA reset and export it as CSV', async () => {
    await page.selectOption('select[name=kind]', 'two_factor_reset');
    await submit(page, 'button:has-text("Filter")');
    const rows = page.locator('table.list tbody tr');
    check((await rows.count()) === 1, `the filter shows ${await rows.count()} rows, expected the one reset`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a:has-text("Export CSV")')]);
    const csv = fs.readFileSync(await download.path(), 'utf8');
    const lines = csv.trim().split(/\r\n/);
    check(/^id,at,kind,event,actor,target,client_ip,user_agent,detail$/.test(lines[0]), `CSV header: ${lines[0]}`);
    check(lines.length === 2 && lines[1].includes('two_factor_reset') && lines[1].includes(login(OM)) && lines[1].includes(login(ALICE)), `CSV rows: ${lines.slice(1).join(' | ')}`);
    return `${download.suggestedFilename()}: ${lines.length - 1} event`;
  });

  await step('on a 390x844 phone the users list and the audit log fit the screen', async () => {
    const state = await desktop.storageState();
    const { context, page: phone } = await openPage(run, { ...PHONE, storageState: state }, 'phone');
    const overflows = [];
    for (const path of ['/console/users', '/console/audit', '/console/policy']) {
      await goto(phone, `${base}${path}`);
      const px = await horizontalOverflow(phone);
      if (px > 0) overflows.push(`${path}: ${px}px`);
    }
    await context.close();
    check(overflows.length === 0, `pages wider than the phone: ${overflows.join(', ')}`);
    return 'no horizontal scroll';
  });
});
