#!/usr/bin/env node
// Single sign-on with Google and Microsoft 365 in real headless Chromium, against the real OpenID
// test provider (tests/oidc/provider.mjs, npm oidc-provider), and the README's SSO screenshots.
//
//   node tests/browser/sso.mjs                  # run the test; screenshots go to the temp dir
//   node tests/browser/sso.mjs --screenshots    # also write docs/screenshots/sso-*.png
//   LATCHKEY_SCREENSHOTS=1 node tests/browser/sso.mjs   # same as --screenshots
//   node tests/browser/sso.mjs --keep           # keep the temp dir (data, logs) after a pass
//
// Needs the binary (LATCHKEY_BIN, default target/debug/latchkey: `cargo build -p latchkey`),
// Chromium (CHROMIUM_BIN, default /usr/bin/chromium), `npm ci` in tests/browser and in tests/oidc
// (scripts/setup.sh does both), and Node.js 20.19+ for the provider (NODE, default this node).
//
// The provider plays Google (issuer http://127.0.0.1:P/google) and Microsoft 365's multi-tenant
// "common" endpoint (http://127.0.0.1:P/ms/common/v2.0). Before each click on "Sign in with ...",
// the test plans who the provider's next login is (POST /admin/next-login); the provider folds its
// own login and consent hops and answers Chromium's authorization request with one 302 to
// Latchkey's callback, which Chromium follows like any redirect.
//
// Latchkey's public URL is http://localhost:L while the provider is http://127.0.0.1:P: two
// different sites, as Google and Latchkey are, so the way back from the provider is a cross-site
// navigation and the browser binding cookie must survive it (SameSite=Lax, not Strict).
//
// Exit code 0 when every step passes; 1 with a message naming the failed step otherwise.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import {
  CheckFailed, DESKTOP, PHONE, REPO, SESSION_COOKIE,
  check, childEnv, cli, expectPath, expectText, freePort, goto, horizontalOverflow, launchChromium, openPage, outboxNames,
  requirePrerequisites, runTest, startLatchkey, step, submit, tail, visibleText, waitForLink, waitForSubject,
} from './lib.mjs';

const OIDC_DIR = path.join(REPO, 'tests', 'oidc');
const NODE = process.env.NODE || process.execPath;

const COMPANY = { name: 'Organization Inc.', domain: 'organization.com' };
const PASSWORD = 'Welcome2Sonar';
const PIN = '2580';
/** Alice links her Google sign-in by hand: Google does not vouch for her address. */
const ALICE = { extension: '101', email: 'alice@example.com', login: `101@${COMPANY.domain}` };
/** The seed's "group email address": two accounts whose designated email is the same. */
const SALES_EMAIL = 'sales@example.com';
const SALES = [
  { extension: '102', email: SALES_EMAIL, login: `102@${COMPANY.domain}` },
  { extension: '103', email: SALES_EMAIL, login: `103@${COMPANY.domain}` },
];
const SSO_COOKIE = '__Host-latchkey_sso';

/** The provider's accounts (PUT /admin/accounts). */
const TENANT = crypto.randomUUID();
const IDENTITIES = {
  aliceGoogle: { provider: 'google', sub: 'g-alice-109876543210', claims: { email: ALICE.email, email_verified: false, name: 'Alice Example' } },
  sales: { provider: 'google', sub: 'g-sales-109876543211', claims: { email: SALES_EMAIL, email_verified: true, name: 'Sales Team' } },
  // Microsoft 365: a tenant that verified the domain of the address (xms_edov), so the email counts.
  aliceMicrosoft: {
    provider: 'microsoft',
    tenant: TENANT,
    sub: 'm-alice-Zk3bQ1x9',
    claims: { email: ALICE.email, preferred_username: ALICE.email, name: 'Alice Example', oid: crypto.randomUUID(), xms_edov: true },
  },
};

const randomHex = (bytes) => crypto.randomBytes(bytes).toString('hex');

// ------------------------------------------------------------------------------------------ the OpenID provider

/**
 * Starts tests/oidc/provider.mjs on a free port with `config`; answers its base URL once it
 * printed `{"port":N}`. Its log goes to the run's temp dir; the run stops it at the end (and it
 * exits by itself when its stdin closes, should this process die first).
 */
async function startProvider(run, config) {
  check(
    fs.existsSync(path.join(OIDC_DIR, 'node_modules', 'oidc-provider', 'package.json')),
    `the OpenID test provider's npm packages are missing (${path.join(OIDC_DIR, 'node_modules')}): run \`bash scripts/setup.sh\``,
  );
  const dir = path.join(run.tmp, 'oidc');
  fs.mkdirSync(dir, { recursive: true });
  run.cleanOnPass.push(dir); // the clients' secrets: throwaway, but not left lying around
  const configFile = path.join(dir, 'provider.json');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2), { mode: 0o600 });
  const logFile = path.join(run.tmp, 'oidc-provider.log');
  run.logs.push({ label: 'OpenID provider log', file: logFile });
  const log = fs.openSync(logFile, 'a');
  const child = spawn(NODE, [path.join(OIDC_DIR, 'provider.mjs'), '--port', '0', '--config', configFile, '--exit-on-stdin-close'], {
    cwd: OIDC_DIR,
    stdio: ['pipe', 'pipe', log],
  });
  fs.closeSync(log);
  run.children.push(child);
  const port = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new CheckFailed(`the OpenID test provider printed no port within 20 s; its log:\n${tail(logFile)}`)), 20_000);
    const done = (fn, v) => {
      clearTimeout(timer);
      fn(v);
    };
    child.once('error', (e) => done(reject, new CheckFailed(`cannot run \`${NODE}\` for the OpenID test provider: ${e.message}`)));
    child.once('exit', (code, signal) => done(reject, new CheckFailed(`the OpenID test provider exited (${code ?? signal}) before it was ready; its log:\n${tail(logFile)}`)));
    child.stdout.setEncoding('utf8');
    const onData = (chunk) => {
      out += chunk;
      const end = out.indexOf('\n');
      if (end < 0) return;
      child.stdout.off('data', onData);
      child.stdout.resume(); // nothing else is printed there; drain it all the same
      const line = out.slice(0, end);
      try {
        done(resolve, JSON.parse(line).port);
      } catch {
        done(reject, new CheckFailed(`the OpenID test provider's first line is not {"port":N}: ${line.slice(0, 100)}`));
      }
    };
    child.stdout.on('data', onData);
  });
  child.removeAllListeners('exit');
  check(Number.isInteger(port) && port > 0, `the OpenID test provider announced port ${port}`);
  return `http://127.0.0.1:${port}`;
}

/** The provider's admin API (JSON); anything but 200 fails the step with the provider's answer. */
async function admin(idp, method, route, body) {
  const r = await fetch(`${idp}${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await r.text();
  check(r.status === 200, `${method} ${route} at the OpenID provider answered ${r.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

/** Who the provider's next login is: one of IDENTITIES, or `{ deny: true }`. */
async function nextLogin(idp, who) {
  const plan = who.deny ? { deny: true } : { provider: who.provider, tenant: who.tenant, sub: who.sub };
  await admin(idp, 'POST', '/admin/next-login', plan);
}

// ------------------------------------------------------------------------------------------ the test

await runTest('sso', async (run) => {
  const { dataDir, outbox, problems, shoot } = run;
  const defects = []; // wrong but not blocking: listed, and failed, in the last step
  let env;
  let base; // Latchkey, as the browser and the provider know it: http://localhost:L
  let listen; // where it listens: http://127.0.0.1:L
  let idp; // the provider: http://127.0.0.1:P

  /** For pages worth a look that are not README material: always into the temp dir. */
  const glance = async (p, name, options = {}) => {
    const dir = path.join(run.tmp, 'screenshots');
    fs.mkdirSync(dir, { recursive: true });
    await p.screenshot({ path: path.join(dir, name), fullPage: true, animations: 'disabled', caret: 'hide', ...options });
    return name;
  };

  // ---------------------------------------------------------------- setup
  await step('start the OpenID test provider (Google, Microsoft 365) with Latchkey\'s two callbacks registered', async () => {
    requirePrerequisites();
    const port = await freePort(); // Latchkey's, first: its public URL is in the provider's registrations
    base = `http://localhost:${port}`;
    listen = `http://127.0.0.1:${port}`;
    const google = { client_id: `${randomHex(6)}-latchkey.apps.googleusercontent.com`, client_secret: `GOCSPX-${randomHex(14)}` };
    const microsoft = { client_id: crypto.randomUUID(), client_secret: `lk~${randomHex(18)}` };
    idp = await startProvider(run, {
      google: { ...google, redirect_uris: [`${base}/sso/google/callback`] },
      microsoft: { ...microsoft, redirect_uris: [`${base}/sso/microsoft/callback`], tenants: [TENANT] },
    });
    await admin(idp, 'PUT', '/admin/accounts', Object.values(IDENTITIES));
    const status = await admin(idp, 'GET', '/admin/status');
    check(status.google.issuer === `${idp}/google`, `the provider's Google issuer is ${status.google.issuer}, expected ${idp}/google`);
    env = childEnv(dataDir, port, {
      LATCHKEY_PUBLIC_URL: base,
      LATCHKEY_SSO__GOOGLE__ISSUER: `${idp}/google`,
      LATCHKEY_SSO__GOOGLE__CLIENT_ID: google.client_id,
      LATCHKEY_SSO__GOOGLE__CLIENT_SECRET: google.client_secret,
      LATCHKEY_SSO__MICROSOFT__ISSUER: `${idp}/ms/common/v2.0`,
      LATCHKEY_SSO__MICROSOFT__CLIENT_ID: microsoft.client_id,
      LATCHKEY_SSO__MICROSOFT__CLIENT_SECRET: microsoft.client_secret,
    });
    return `${idp}; Latchkey will be ${base}`;
  });

  const welcomeLinks = new Map();
  await step('with the CLI: the company with the sso feature, 101 (alice@), 102 and 103 (both sales@)', async () => {
    cli(env, ['company', 'create', '--name', COMPANY.name, '--domain', COMPANY.domain]);
    const out = cli(env, ['company', 'enable', '--domain', COMPANY.domain, '--feature', 'sso']);
    check(/google/.test(out) && /microsoft/.test(out), `\`company enable --feature sso\` did not turn on both providers: ${out.trim()}`);
    for (const u of [ALICE, ...SALES]) {
      const before = outboxNames(outbox);
      const created = cli(env, ['user', 'create', '--company', COMPANY.domain, '--extension', u.extension, '--email', u.email]);
      check(created.includes(u.login), `user create did not print the login name ${u.login}`);
      const { link } = await waitForLink(outbox, 'complete-setup', base, { after: before, to: u.email, timeoutMs: 5000 });
      welcomeLinks.set(u.login, link);
    }
    return `${welcomeLinks.size} welcome emails`;
  });

  await step('start `latchkey serve` with [sso.google] and [sso.microsoft] and wait for /readyz', async () => {
    await startLatchkey(run, env, `${listen}/readyz`);
    return `listening on ${listen}, public URL ${base}`;
  });

  let browser;
  await step('launch headless Chromium', async () => {
    browser = await launchChromium(run);
    return `Chromium ${browser.version()}`;
  });
  const { context: desktop, page } = await openPage(run, DESKTOP, 'desktop');
  run.page = page;

  await step('activate the three accounts: each welcome link -> Complete Setup (this verifies the designated email)', async () => {
    for (const [login, link] of welcomeLinks) {
      await goto(page, link);
      await expectText(page, '.facts code', login);
      await page.fill('#password', PASSWORD);
      await page.fill('#password_confirmation', PASSWORD);
      await page.fill('#pin', PIN);
      await submit(page, 'main form button:has-text("Save")');
      expectPath(page, '/sign-in', '?done=setup');
    }
    return [...welcomeLinks.keys()].join(', ');
  });

  // ---------------------------------------------------------------- helpers
  const signedInAs = async () => (await page.locator('header .who').innerText()).trim();
  const hasSession = async () => (await desktop.cookies(base)).some((k) => k.name === SESSION_COOKIE);
  const signOut = async () => {
    await submit(page, 'header form[action="/sign-out"] button:has-text("Sign out")');
    expectPath(page, '/sign-in', '?done=signed-out');
    check(!(await hasSession()), 'the session cookie is still there after signing out');
  };
  const ssoRow = (provider) => page.locator('table.sso-links tbody tr').filter({ has: page.locator(`td:first-child:text-is("${provider}")`) });

  /**
   * On the sign-in page, plans `who` at the provider and clicks `label`; Chromium goes to the
   * provider and back by itself. Checks it went start -> provider -> callback; answers the final
   * response and the hops (paths on Latchkey, the provider's as `idp:/path`).
   */
  const viaProvider = async (p, label, who) => {
    const provider = label.includes('Google') ? 'google' : 'microsoft';
    if (!p.url().startsWith(`${base}/sign-in`)) await goto(p, `${base}/sign-in`);
    await nextLogin(idp, who);
    const hops = [];
    const onRequest = (r) => {
      if (r.isNavigationRequest() && r.frame() === p.mainFrame()) hops.push(new URL(r.url()));
    };
    p.on('request', onRequest);
    let resp;
    try {
      resp = await submit(p, `a.sso-button:text-is("${label}")`);
    } finally {
      p.off('request', onRequest);
    }
    const shown = hops.map((u) => (u.origin === base ? u.pathname : u.origin === idp ? `idp:${u.pathname}` : u.origin + u.pathname));
    const at = (i, what, test) => check(hops[i] && test(hops[i]), `"${label}": hop ${i + 1} should be ${what}; the hops were ${shown.join(' -> ')}`);
    at(0, `/sso/${provider}/start`, (u) => u.origin === base && u.pathname === `/sso/${provider}/start`);
    at(1, 'the provider\'s authorization endpoint', (u) => u.origin === idp && /\/(auth|authorize)$/.test(u.pathname));
    at(2, `/sso/${provider}/callback`, (u) => u.origin === base && u.pathname === `/sso/${provider}/callback`);
    const ps = hops[1].searchParams;
    check(ps.get('code_challenge_method') === 'S256' && ps.get('nonce') && ps.get('state'), 'the authorization request has no PKCE S256, nonce or state');
    check(ps.get('redirect_uri') === `${base}/sso/${provider}/callback`, `the authorization request's redirect_uri is ${ps.get('redirect_uri')}`);
    return { resp, hops: shown };
  };

  // ---------------------------------------------------------------- 1. the sign-in page
  await step('the sign-in page offers "Sign in with Google" and "Sign in with Office 365"', async () => {
    await goto(page, `${base}/sign-in`);
    await expectText(page, 'h1', 'Sign in');
    const buttons = page.locator('.sso[role=group] a.sso-button');
    const found = await buttons.evaluateAll((as) => as.map((a) => [a.textContent.trim(), a.getAttribute('href')]));
    check(
      JSON.stringify(found) === JSON.stringify([['Sign in with Google', '/sso/google/start'], ['Sign in with Office 365', '/sso/microsoft/start']]),
      `the single sign-on buttons are ${JSON.stringify(found)}`,
    );
    for (const b of await buttons.all()) check(await b.isVisible(), `"${await b.innerText()}" is not visible`);
    await expectText(page, '.sso .or', 'or');
    return await shoot(page, 'sso-sign-in.png');
  });

  // ---------------------------------------------------------------- 2. linking
  let linkUrl;
  await step('"Sign in with Google" as an address Google has not verified -> the link page; nobody signed in yet', async () => {
    const { resp, hops } = await viaProvider(page, 'Sign in with Google', IDENTITIES.aliceGoogle);
    check(resp?.status() === 200, `the link page answered ${resp?.status()}`);
    expectPath(page, '/sso/link');
    linkUrl = page.url();
    await expectText(page, 'h1', 'Link your Google sign-in');
    await expectText(page, '.lead', ALICE.email);
    await page.locator('#login_name').waitFor();
    await page.locator('#password').waitFor();
    check(!(await hasSession()), 'a session cookie before the identity was linked');
    const binding = (await desktop.cookies(base)).find((k) => k.name === SSO_COOKIE);
    check(binding, `no ${SSO_COOKIE} cookie binds the trip to this browser`);
    check(binding.httpOnly && binding.secure && binding.sameSite === 'Lax', `the ${SSO_COOKIE} cookie is not HttpOnly, Secure, SameSite=Lax`);
    check((await horizontalOverflow(page)) <= 0, 'the link page scrolls sideways');
    return `${hops.join(' -> ')}; ${await shoot(page, 'sso-link.png')}`;
  });

  await step('a wrong password on the link page -> the form again with the error; still nobody signed in', async () => {
    await page.fill('#login_name', ALICE.login);
    await page.fill('#password', 'Not2ThePassword');
    const resp = await submit(page, 'main form button:has-text("Link and sign in")');
    check(resp?.status() === 401, `a wrong password on the link page answered ${resp?.status()}, expected 401`);
    expectPath(page, '/sso/link');
    await expectText(page, '.alert.error', /not right/i);
    await expectText(page, 'h1', 'Link your Google sign-in');
    check((await page.inputValue('#login_name')) === ALICE.login, 'the login name was not kept');
    check(!(await hasSession()), 'a wrong password gave a session cookie');
    return `"${await visibleText(page.locator('.alert.error'))}"`;
  });

  await step('the login name and password -> Link and sign in -> My Account; Account Security lists the Google sign-in', async () => {
    const before = outboxNames(outbox);
    await page.fill('#login_name', ALICE.login);
    await page.fill('#password', PASSWORD);
    await submit(page, 'main form button:has-text("Link and sign in")');
    expectPath(page, '/account');
    check((await signedInAs()) === ALICE.login, `signed in as "${await signedInAs()}", expected ${ALICE.login}`);
    await expectText(page, 'h3#sso-h', 'Sign-in with Google or Office 365');
    const row = ssoRow('Google');
    check((await row.count()) === 1, `Account Security lists ${await row.count()} Google sign-ins, expected 1`);
    check((await row.locator('td').nth(1).innerText()).trim() === ALICE.email, `the linked Google sign-in shows "${await row.locator('td').nth(1).innerText()}", expected ${ALICE.email}`);
    check((await row.locator('td').nth(3).innerText()).trim() === 'never', 'a sign-in just linked already shows a "Last used" time');
    check((await row.locator('form[action^="/account/sso-links/"] button:has-text("Remove")').count()) === 1, 'the Google row has no Remove button');
    const mail = await waitForSubject(outbox, /single sign-on link added/i, { after: before, to: ALICE.email });
    check(mail.text.includes('Google') && mail.text.includes(ALICE.email), 'the "link added" email does not name Google and the address');
    await page.locator('#sso-h').evaluate((h) => {
      h.scrollIntoView({ block: 'start' });
      window.scrollBy(0, -16);
    });
    return `email "${mail.subject}"; ${await shoot(page, 'sso-linked.png', { fullPage: false })}`;
  });

  // ---------------------------------------------------------------- 3. the linked identity signs in directly
  await step('sign out; "Sign in with Google" again as the same identity -> straight to My Account, no link page', async () => {
    await signOut();
    const { hops } = await viaProvider(page, 'Sign in with Google', IDENTITIES.aliceGoogle);
    expectPath(page, '/account');
    check(!hops.some((h) => h.startsWith('/sso/link') || h.startsWith('/sso/choose')), `the way to My Account went through ${hops.join(' -> ')}`);
    check((await signedInAs()) === ALICE.login, `signed in as "${await signedInAs()}", expected ${ALICE.login}`);
    const used = (await ssoRow('Google').locator('td').nth(3).innerText()).trim();
    check(used && used !== 'never', 'the link\'s "Last used" still says never after signing in with it');
    await signOut();
    return hops.join(' -> ');
  });

  // ---------------------------------------------------------------- 4. the account chooser
  const salesIds = {};
  await step(`a verified Google address that two accounts share (${SALES_EMAIL}) -> the account chooser lists both`, async () => {
    const { hops } = await viaProvider(page, 'Sign in with Google', IDENTITIES.sales);
    expectPath(page, '/sso/choose');
    await expectText(page, 'h1', 'Choose an account');
    await expectText(page, '.lead', SALES_EMAIL);
    const items = page.locator('ul.candidates li');
    const logins = (await items.locator('strong').allInnerTexts()).map((s) => s.trim());
    check(JSON.stringify([...logins].sort()) === JSON.stringify(SALES.map((u) => u.login)), `the chooser lists ${JSON.stringify(logins)}, expected ${SALES.map((u) => u.login).join(' and ')}`);
    for (const u of SALES) {
      const label = page.locator('ul.candidates label').filter({ hasText: u.login });
      salesIds[u.login] = await label.locator('input[type=radio][name=user]').getAttribute('value');
      await expectText(page, `ul.candidates label:has-text("${u.login}") .who-company`, COMPANY.name);
    }
    check((await page.locator('ul.candidates input[name=user]:checked').count()) === 1, 'the chooser does not have exactly one account selected');
    check(!(await hasSession()), 'a session cookie before an account was chosen');
    check((await horizontalOverflow(page)) <= 0, 'the chooser scrolls sideways');
    await expectText(page, 'nav.links a[href^="/sso/link?waiting="]', 'Use another account');
    await expectText(page, 'nav.links a[href="/sign-in"]', 'Sign in with your password');
    // Nothing was chosen yet: the first account is selected so that Continue has a choice, but no
    // account may be called "last used". Noted here, failed at the end, so every page still gets a look.
    const labels = (await page.locator('ul.candidates .who-company').allInnerTexts()).map((l) => l.trim());
    if (labels.some((l) => /last used/i.test(l))) {
      defects.push(`the account chooser's first visit calls an account "last used" although none was ever chosen: ${JSON.stringify(labels)}`);
    }
    return `${hops.join(' -> ')}; ${await shoot(page, 'sso-chooser.png')}`;
  });

  await step(`choose the second, ${SALES[1].login} -> Continue -> My Account as ${SALES[1].login}; sign out`, async () => {
    await page.check(`ul.candidates input[name=user][value="${salesIds[SALES[1].login]}"]`);
    await submit(page, 'main form button:has-text("Continue")');
    expectPath(page, '/account');
    check((await signedInAs()) === SALES[1].login, `signed in as "${await signedInAs()}", expected ${SALES[1].login}`);
    await signOut();
  });

  await step(`"Sign in with Google" again -> the chooser has ${SALES[1].login} pre-selected, "last used"; Continue signs in as it`, async () => {
    await viaProvider(page, 'Sign in with Google', IDENTITIES.sales);
    expectPath(page, '/sso/choose');
    const checked = page.locator('ul.candidates input[name=user]:checked');
    check((await checked.count()) === 1 && (await checked.getAttribute('value')) === salesIds[SALES[1].login],
      `the pre-selected account is "${await checked.first().getAttribute('value').catch(() => 'none')}", expected ${SALES[1].login} (id ${salesIds[SALES[1].login]})`);
    await expectText(page, `ul.candidates label:has(input:checked) .who-company`, /last used/);
    const other = await page.locator('ul.candidates label:not(:has(input:checked)) .who-company').allInnerTexts();
    check(!other.some((l) => /last used/i.test(l)), `an account not chosen is also called "last used": ${JSON.stringify(other)}`);
    const shot = await glance(page, 'sso-chooser-remembered.png');
    await submit(page, 'main form button:has-text("Continue")');
    expectPath(page, '/account');
    check((await signedInAs()) === SALES[1].login, `signed in as "${await signedInAs()}", expected ${SALES[1].login}`);
    await signOut();
    return shot;
  });

  // ---------------------------------------------------------------- Microsoft 365
  await step('"Sign in with Office 365" (a tenant that verified the domain, xms_edov) -> straight to My Account as 101', async () => {
    const { hops } = await viaProvider(page, 'Sign in with Office 365', IDENTITIES.aliceMicrosoft);
    check(hops[1].startsWith('idp:/ms/common/'), `Office 365 went to ${hops[1]}, not the multi-tenant endpoint`);
    expectPath(page, '/account');
    check((await signedInAs()) === ALICE.login, `signed in as "${await signedInAs()}", expected ${ALICE.login}`);
    const rows = await page.locator('table.sso-links tbody tr td:first-child').allInnerTexts();
    check(JSON.stringify(rows) === JSON.stringify(['Google']), `Account Security lists ${JSON.stringify(rows)}; an email match links nothing, so only Google`);
    return hops.join(' -> ');
  });

  // ---------------------------------------------------------------- 5. removing the link
  await step('Remove the Google sign-in in Account Security -> "The linked sign-in was removed."; it is no longer listed', async () => {
    const before = outboxNames(outbox);
    const row = ssoRow('Google');
    await submit(page, 'table.sso-links tbody tr:has(td:first-child:text-is("Google")) button:has-text("Remove")');
    expectPath(page, '/account', '?done=sso-unlinked');
    await expectText(page, '.alert.success', 'The linked sign-in was removed.');
    check((await row.count()) === 0, 'Account Security still lists the Google sign-in');
    await expectText(page, '#sso-h + p.hint', 'No sign-in is linked to this account.');
    const mail = await waitForSubject(outbox, /single sign-on link removed/i, { after: before, to: ALICE.email });
    const box = await page.locator('.alert.success').boundingBox();
    const scrollY = await page.evaluate(() => window.scrollY);
    const noticeInView = box && box.y >= 0 && box.y + box.height <= DESKTOP.viewport.height;
    const shot = await glance(page, 'sso-removed.png', { fullPage: false }); // what the browser shows: the page opens at #sso-h
    const note = noticeInView ? 'the notice is in view' : `note: the notice is out of view, the page opened at #sso-h (scrollY ${scrollY})`;
    return `email "${mail.subject}"; ${note}; ${shot}`;
  });

  await step('sign out; "Sign in with Google" as the same identity -> the link page again; Cancel -> the sign-in page', async () => {
    await signOut();
    const { hops } = await viaProvider(page, 'Sign in with Google', IDENTITIES.aliceGoogle);
    expectPath(page, '/sso/link');
    await expectText(page, 'h1', 'Link your Google sign-in');
    check(page.url() !== linkUrl, 'the link page has the same waiting identity as the first time');
    await submit(page, 'nav.links a:has-text("Cancel")');
    expectPath(page, '/sign-in');
    check(!(await hasSession()), 'a session cookie after Cancel');
    return hops.join(' -> ');
  });

  // ---------------------------------------------------------------- 6. a denied consent
  await step('the user denies consent at Google -> "You were not signed in" with "Sign in with your password" -> the sign-in page', async () => {
    const { resp, hops } = await viaProvider(page, 'Sign in with Google', { deny: true });
    check(resp?.status() === 400, `the callback with error=access_denied answered ${resp?.status()}, expected 400`);
    expectPath(page, '/sso/google/callback');
    await expectText(page, 'h1', 'You were not signed in');
    await expectText(page, 'main .lead', 'Google did not sign you in');
    const back = page.locator('main a.button');
    check((await back.count()) === 1, `the error page has ${await back.count()} buttons, expected 1`);
    check((await back.innerText()).trim() === 'Sign in with your password', `the error page's button reads "${await back.innerText()}"`);
    check((await back.getAttribute('href')) === '/sign-in', `the error page's button leads to ${await back.getAttribute('href')}`);
    check(!(await hasSession()), 'a denied consent gave a session cookie');
    const shot = await glance(page, 'sso-denied.png');
    await submit(page, 'main a.button:has-text("Sign in with your password")');
    expectPath(page, '/sign-in');
    await page.locator('#login_name').waitFor();
    return `${hops.join(' -> ')}; ${shot}`;
  });

  // ---------------------------------------------------------------- phone
  await step('on a 390x844 phone: the sign-in page, the chooser, and My Account with a linked sign-in fit the screen', async () => {
    const { context: phone, page: phonePage } = await openPage(run, PHONE, 'phone');
    try {
      await goto(phonePage, `${base}/sign-in`);
      const overflows = [];
      const measure = async (what, file) => {
        const px = await horizontalOverflow(phonePage);
        if (px > 0) overflows.push(`${what} by ${px} px`);
        await glance(phonePage, file);
      };
      await measure('the sign-in page', 'sso-sign-in-phone.png');
      await viaProvider(phonePage, 'Sign in with Google', IDENTITIES.sales);
      expectPath(phonePage, '/sso/choose');
      await measure('the chooser', 'sso-chooser-phone.png');
      await viaProvider(phonePage, 'Sign in with Google', IDENTITIES.aliceGoogle);
      expectPath(phonePage, '/sso/link');
      await measure('the link page', 'sso-link-phone.png');
      await phonePage.fill('#login_name', ALICE.login);
      await phonePage.fill('#password', PASSWORD);
      await submit(phonePage, 'main form button:has-text("Link and sign in")');
      expectPath(phonePage, '/account');
      await phonePage.locator('#sso-h').scrollIntoViewIfNeeded();
      await measure('My Account', 'sso-account-phone.png');
      check(overflows.length === 0, `on a 390 px phone these pages scroll sideways: ${overflows.join(', ')}`);
      const email = phonePage.locator('table.sso-links tbody tr td:nth-child(2)').first();
      return (await email.isVisible()) ? 'the linked sign-in shows its email' : 'note: the linked sign-in\'s Email column is hidden on the phone';
    } finally {
      await phone.close();
    }
  });

  // ---------------------------------------------------------------- the provider's side, and the pages' scripts
  await step('every trip reached the provider as a PKCE S256 code request; no script or console errors, nor defects noted on the way', async () => {
    const seen = await admin(idp, 'GET', '/admin/authorizations');
    check(Array.isArray(seen) && seen.length > 0, 'the provider saw no authorization request');
    const outcomes = seen.map((a) => a.outcome);
    check(seen.every((a) => a.params?.code_challenge_method === 'S256' && a.params?.response_type === 'code'), 'an authorization request was not a PKCE S256 code request');
    check(outcomes.filter((o) => o === 'access_denied').length === 1, `outcomes ${JSON.stringify(outcomes)}: expected exactly one access_denied`);
    check(outcomes.filter((o) => o === 'code').length === seen.length - 1, `outcomes ${JSON.stringify(outcomes)}: every other trip should end with a code`);
    check(problems.length === 0, problems.join('\n'));
    check(defects.length === 0, `noted along the way:\n${defects.map((d) => `- ${d}`).join('\n')}`);
    return `${seen.length} authorization requests: ${seen.filter((a) => a.provider === 'google').length} Google, ${seen.filter((a) => a.provider === 'microsoft').length} Microsoft`;
  });
});
