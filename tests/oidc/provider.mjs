#!/usr/bin/env node
// A real OpenID provider on loopback for Latchkey's single sign-on tests, built on panva's
// oidc-provider (the certified OpenID Connect server, pinned in package.json). Latchkey is the
// relying party; this process plays Google and Microsoft 365 (Entra ID).
//
//   node tests/oidc/provider.mjs [--port N] [--config FILE] [--key-cache FILE] [--exit-on-stdin-close]
//
// `--port` (or env OIDC_PORT; default 0 = any free port) and `--config` (or the first bare
// argument, or env OIDC_CONFIG: a file path, or the JSON itself). Once ready, the first and only
// line on stdout is `{"port":N}`; every log line goes to stderr. Client secrets are never logged.
// With --exit-on-stdin-close the process ends when its stdin closes (so a test process that dies
// cannot leave it behind).
//
// Config:
//   { "google":    { "client_id", "client_secret", "redirect_uris": [..],
//                    "token_endpoint_auth_method"?: "client_secret_basic" | "client_secret_post" },
//     "microsoft": { "client_id", "client_secret", "redirect_uris": [..], "tenants": ["<tid>", ..],
//                    "token_endpoint_auth_method"?: .. } }
//
// What is served on http://127.0.0.1:PORT:
//   /google/...                 Google-like issuer `http://127.0.0.1:PORT/google`
//                               (discovery at /google/.well-known/openid-configuration).
//   /ms/<tid>/v2.0/...          one Entra-like issuer per tenant, `http://127.0.0.1:PORT/ms/<tid>/v2.0`;
//                               ID tokens also carry `tid` (the tenant), `oid`, `preferred_username`,
//                               `email` and, when the account has it, `xms_edov`.
//   /ms/common/v2.0/.well-known/openid-configuration
//                               Entra's multi-tenant "common" metadata: `issuer` is the template
//                               `http://127.0.0.1:PORT/ms/{tenantid}/v2.0`; its endpoints are
//                               /ms/common/oauth2/v2.0/authorize, /ms/common/oauth2/v2.0/token,
//                               /ms/common/discovery/v2.0/keys and /ms/common/oidc/userinfo
//                               (/ms/organizations/... is the same).
//   /admin/...                  the test's remote control (JSON), below; never "down".
//
// Every provider: authorization code flow only, PKCE S256 required, scopes `openid email profile`
// (and offline_access, honoured by oidc-provider only with prompt=consent), prompt values none,
// login, consent and select_account, ID tokens RS256 with the account's claims
// (conformIdTokenClaims off: Google and Entra put them in the ID token too). No DPoP, PAR, or dev
// interactions. Key rotation and new redirect URIs rebuild the oidc-provider instances with the
// new keys / client; their stores (codes, grants, tokens) are kept, so nothing in flight is lost.
//
// Non-interactive logins. A real user clicks through a login page and a consent page; here the
// test chooses beforehand, through the admin API, who the NEXT authorization request logs in as
// (or that the user denies). The interaction route then resolves login and consent in one step
// with oidc-provider's interactions API (interactionDetails, a Grant for the requested scopes,
// interactionFinished). So that a test client need not keep the provider's cookies, the
// authorization endpoint "folds" the browser's hops: on an authorization request from outside,
// this process itself plays the browser — it calls the real authorization endpoint, follows the
// redirects to the interaction route and back to the resume endpoint with a cookie jar of its own —
// and answers the caller with a single 302 to the client's redirect_uri (`code`, `state`, and for
// Google-like and tenant issuers `iss`, RFC 9207) or to it with `error=access_denied&state=…`.
// An authorization request that oidc-provider refuses without redirecting (unknown client,
// unregistered redirect_uri) is answered with oidc-provider's error, as JSON.
//
// Microsoft "common" design. Entra serves every tenant from one set of endpoints and one key set;
// the tenant is only known once the user signed in. Here each tenant is its own oidc-provider
// instance (so its ID tokens carry its own concrete `iss`), all tenants share one signing
// keystore (so /ms/common/discovery/v2.0/keys is every tenant's key set, as at Entra), and the
// common endpoints dispatch to a tenant:
//   * authorize: to the tenant of the account chosen for the next login (the first tenant when
//     the next login is a denial without a tenant); the `iss` response parameter is dropped there,
//     as the common metadata has no concrete issuer to compare it with (Entra sends none);
//   * token: to the tenant that issued the `code` (or `refresh_token`), remembered when the
//     authorization response went out;
//   * userinfo: to the tenant that issued the access token.
//
// Admin API (JSON bodies and answers):
//   GET  /admin/status                   issuers, current key ids, down flags, the planned login
//   PUT  /admin/accounts                 [{ "provider": "google"|"microsoft", "tenant"?: tid,
//                                           "sub": "...", "claims": { ... } }, ...]  (replaces all)
//   POST /admin/next-login               { "provider", "tenant"? (microsoft), "sub" }
//                                        or { "deny": true } — used by the next authorization
//                                        request that reaches a login, then forgotten
//   DELETE /admin/next-login             forget the planned login
//   POST /admin/rotate-keys              { "keep_old": bool, "provider"?: "google"|"microsoft" }:
//                                        a new signing key (new kid) that signs from now on;
//                                        JWKS serves new + old when keep_old, else only new
//   POST /admin/down                     { "down": bool, "provider"?: ... }: 503 for everything
//   PUT  /admin/redirect-uris            { "provider"?: ..., "redirect_uris": [..] }
//   GET  /admin/authorizations           every authorization request seen from outside: provider,
//                                        tenant, endpoint, its query parameters, the outcome
//
// Claims put in ID tokens (and userinfo), by scope; other claims of an account are dropped:
//   Google:    openid: sub, hd; email: email, email_verified;
//              profile: name, given_name, family_name, picture, locale
//   Microsoft: openid: sub, tid (defaults to the tenant), ver, xms_edov;
//              profile: name, given_name, family_name, preferred_username, oid; email: email

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

// oidc-provider prints notices with console.info; stdout carries only the port line.
console.log = console.error;
console.info = console.error;

const log = (message) => process.stderr.write(`[oidc-test-provider] ${message}\n`);

let Provider;
let interactionPolicy;
let createMemoryAdapter;
try {
  ({ Provider, interactionPolicy } = await import('oidc-provider'));
  // The package's own in-memory adapter, one store per issuer, kept across the rebuilds that key
  // rotation and redirect URI changes do (deep import: the version is pinned exactly).
  ({ createMemoryAdapter } = await import('oidc-provider/lib/adapters/memory_adapter.js'));
} catch (error) {
  log(`cannot load oidc-provider (${error.message}): run \`bash scripts/setup.sh\``);
  process.exit(2);
}

// ---------------------------------------------------------------------------------------------
// Arguments and configuration

function parseArgs(argv) {
  const out = {
    port: process.env.OIDC_PORT,
    config: process.env.OIDC_CONFIG,
    keyCache: process.env.OIDC_KEY_CACHE,
    exitOnStdinClose: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--port') out.port = argv[++i];
    else if (arg.startsWith('--port=')) out.port = arg.slice('--port='.length);
    else if (arg === '--config') out.config = argv[++i];
    else if (arg.startsWith('--config=')) out.config = arg.slice('--config='.length);
    else if (arg === '--key-cache') out.keyCache = argv[++i];
    else if (arg.startsWith('--key-cache=')) out.keyCache = arg.slice('--key-cache='.length);
    else if (arg === '--exit-on-stdin-close') out.exitOnStdinClose = true;
    else if (!arg.startsWith('--')) out.config = arg;
    else throw new Error(`unknown argument ${arg}`);
  }
  return out;
}

const TENANT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const RESERVED_TENANTS = new Set(['common', 'organizations', 'consumers']);
const AUTH_METHODS = new Set(['client_secret_basic', 'client_secret_post']);

function checkClient(name, client) {
  if (!client || typeof client !== 'object') throw new Error(`config: "${name}" is missing`);
  for (const field of ['client_id', 'client_secret']) {
    if (typeof client[field] !== 'string' || !client[field]) throw new Error(`config: ${name}.${field} must be a non-empty string`);
  }
  checkRedirectUris(`${name}.redirect_uris`, client.redirect_uris);
  const method = client.token_endpoint_auth_method ?? 'client_secret_basic';
  if (!AUTH_METHODS.has(method)) throw new Error(`config: ${name}.token_endpoint_auth_method must be one of ${[...AUTH_METHODS]}`);
  return {
    client_id: client.client_id,
    client_secret: client.client_secret,
    redirect_uris: [...client.redirect_uris],
    token_endpoint_auth_method: method,
  };
}

function checkRedirectUris(what, uris) {
  if (!Array.isArray(uris) || !uris.length || !uris.every((u) => typeof u === 'string' && URL.canParse(u))) {
    throw new Error(`${what} must be a non-empty array of absolute URLs`);
  }
}

function loadConfig(source) {
  if (!source) throw new Error('no config: pass a JSON file path (argument or --config) or set OIDC_CONFIG');
  const text = source.trimStart().startsWith('{') ? source : fs.readFileSync(source, 'utf8');
  const raw = JSON.parse(text);
  const google = checkClient('google', raw.google);
  const microsoft = checkClient('microsoft', raw.microsoft);
  const tenants = raw.microsoft.tenants;
  if (!Array.isArray(tenants) || !tenants.length) throw new Error('config: microsoft.tenants must be a non-empty array');
  for (const tid of tenants) {
    if (typeof tid !== 'string' || !TENANT_ID.test(tid) || RESERVED_TENANTS.has(tid.toLowerCase())) {
      throw new Error(`config: invalid tenant id ${JSON.stringify(tid)}`);
    }
  }
  if (new Set(tenants).size !== tenants.length) throw new Error('config: duplicate tenant ids');
  microsoft.tenants = [...tenants];
  return { google, microsoft };
}

// ---------------------------------------------------------------------------------------------
// State

let args;
let config;
let requestedPort;
try {
  args = parseArgs(process.argv.slice(2));
  config = loadConfig(args.config);
  requestedPort = Number(args.port ?? 0);
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new Error(`invalid port ${args.port}`);
  }
} catch (error) {
  log(`cannot start: ${error.message}`);
  process.exit(2);
}

// Marks this process's own requests to itself (the folded browser hops): those are not folded again.
const INTERNAL_HEADER = 'x-oidc-test-provider-internal';
const INTERNAL_TOKEN = crypto.randomBytes(16).toString('hex');
const COOKIE_KEYS = [crypto.randomBytes(32).toString('hex')];

const state = {
  base: '', // http://127.0.0.1:PORT
  keys: { google: [], microsoft: [] }, // private JWKs; the first one signs
  keyCounter: 0,
  // provider -> tenant ('' for google) -> sub -> claims
  accounts: { google: new Map([['', new Map()]]), microsoft: new Map(config.microsoft.tenants.map((t) => [t, new Map()])) },
  next: null, // { provider, tenant, sub } | { deny: true, provider?, tenant? }
  down: { google: false, microsoft: false },
  adapters: new Map(), // issuer key -> adapter factory (kept across rebuilds)
  google: null, // { provider, callback, mount, kind, tenant }
  tenants: new Map(), // tid -> same shape
  issuedBy: new Map(), // code / refresh token / access token -> tid (for the common endpoints)
  authorizations: [],
};

// RSA keys take a CPU-bound moment to make (0.1 to 0.7 s each), so with --key-cache FILE (or env
// OIDC_KEY_CACHE) they are kept in that file and reused by later runs: within one process no key
// is ever used twice, so each rotation still brings new key material. Test keys, nothing else.
const KEY_CACHE_SIZE = 16;
const keyCache = { file: args.keyCache, keys: [], used: 0 };
if (keyCache.file) {
  try {
    const cached = JSON.parse(fs.readFileSync(keyCache.file, 'utf8'));
    if (Array.isArray(cached)) keyCache.keys = cached.filter((k) => k?.kty === 'RSA' && typeof k.d === 'string');
  } catch {
    // none yet, or unreadable: made anew
  }
}

function saveKeyCache() {
  try {
    const tmp = `${keyCache.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(keyCache.keys.slice(0, KEY_CACHE_SIZE)), { mode: 0o600 });
    fs.renameSync(tmp, keyCache.file);
  } catch (error) {
    log(`cannot write the key cache: ${error.message}`);
  }
}

async function newSigningKey(kind) {
  let jwk;
  if (keyCache.used < keyCache.keys.length) {
    jwk = keyCache.keys[keyCache.used];
    keyCache.used += 1;
  } else {
    const { privateKey } = await new Promise((resolve, reject) => {
      crypto.generateKeyPair('rsa', { modulusLength: 2048 }, (error, publicKey, key) => (error ? reject(error) : resolve({ publicKey, privateKey: key })));
    });
    jwk = privateKey.export({ format: 'jwk' });
    if (keyCache.file && keyCache.keys.length < KEY_CACHE_SIZE) {
      keyCache.keys.push(jwk);
      keyCache.used = keyCache.keys.length;
      saveKeyCache();
    }
  }
  state.keyCounter += 1;
  const kid = `${kind}-${state.keyCounter}-${crypto.randomBytes(4).toString('hex')}`;
  const { kty, n, e, d, p, q, dp, dq, qi } = jwk;
  return { kty, n, e, d, p, q, dp, dq, qi, kid, alg: 'RS256', use: 'sig' };
}

// ---------------------------------------------------------------------------------------------
// The oidc-provider instances

const CLAIMS = {
  google: {
    openid: ['sub', 'hd'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'picture', 'locale'],
  },
  microsoft: {
    openid: ['sub', 'tid', 'ver', 'xms_edov'],
    email: ['email'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'oid'],
  },
};

// login and consent, plus `prompt=select_account` (which Google and Entra accept and relying
// parties send to offer the account chooser): every login here is a fresh choice anyway.
function promptPolicy() {
  const policy = interactionPolicy.base();
  policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }), 0);
  return policy;
}

function accountsOf(kind, tenant) {
  return state.accounts[kind].get(kind === 'google' ? '' : tenant);
}

function buildProvider(kind, tenant) {
  const mount = kind === 'google' ? '/google' : `/ms/${tenant}/v2.0`;
  const issuer = `${state.base}${mount}`;
  const client = config[kind];
  const adapterKey = kind === 'google' ? 'google' : `microsoft:${tenant}`;
  if (!state.adapters.has(adapterKey)) state.adapters.set(adapterKey, createMemoryAdapter(15));

  const provider = new Provider(issuer, {
    adapter: state.adapters.get(adapterKey),
    clients: [{
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: client.token_endpoint_auth_method,
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: state.keys[kind] },
    claims: CLAIMS[kind],
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: COOKIE_KEYS },
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      dPoP: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      resourceIndicators: { enabled: false },
      rpInitiatedLogout: { enabled: kind === 'microsoft' },
      userinfo: { enabled: true },
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 300,
      IdToken: 3600,
      Interaction: 600,
      Session: 600,
      Grant: 600,
      RefreshToken: 86400,
    },
    interactions: {
      policy: promptPolicy(),
      url: (ctx, interaction) => `${mount}/interaction/${interaction.uid}`,
    },
    async findAccount(ctx, sub) {
      const claims = accountsOf(kind, tenant)?.get(sub);
      if (!claims) return undefined;
      return {
        accountId: sub,
        async claims() {
          const defaults = kind === 'microsoft' ? { tid: tenant, ver: '2.0' } : {};
          return { ...defaults, ...claims, sub };
        },
      };
    },
    async renderError(ctx, out, error) {
      ctx.type = 'json';
      ctx.body = { error: out.error, error_description: out.error_description };
      log(`${issuer}: error page ${out.error}: ${out.error_description ?? ''} (${error?.message ?? ''})`);
    },
  });

  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error', 'jwks.error', 'discovery.error']) {
    provider.on(event, (ctx, error) => {
      log(`${issuer}: ${event}: ${error?.error ?? error?.name ?? ''} ${error?.error_description ?? error?.message ?? ''}`);
    });
  }
  return { kind, tenant, mount, issuer, provider, callback: provider.callback() };
}

function rebuild(kinds = ['google', 'microsoft']) {
  if (kinds.includes('google')) state.google = buildProvider('google');
  if (kinds.includes('microsoft')) {
    state.tenants = new Map(config.microsoft.tenants.map((tid) => [tid, buildProvider('microsoft', tid)]));
  }
}

const firstTenant = () => config.microsoft.tenants[0];

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

async function readBody(req, limit = 1 << 20) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function readJson(req) {
  const body = await readBody(req);
  if (!body.length) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw Object.assign(new Error('the body is not JSON'), { status: 400 });
  }
}

function badRequest(message) {
  return Object.assign(new Error(message), { status: 400 });
}

// Hands a request to an oidc-provider instance mounted at `target.mount` (as express would).
function dispatch(target, req, res) {
  req.originalUrl = req.url;
  req.url = req.url.slice(target.mount.length) || '/';
  return target.callback(req, res);
}

// ---------------------------------------------------------------------------------------------
// The folded authorization request (see the top of the file)

function outcomeOf(location) {
  if (location.searchParams.has('code')) return 'code';
  return location.searchParams.get('error') ?? 'redirect';
}

async function foldAuthorization(target, search, req, res, { common }) {
  const record = {
    provider: target.kind,
    tenant: target.tenant ?? null,
    endpoint: common ? 'common' : (target.kind === 'google' ? 'issuer' : 'tenant'),
    params: Object.fromEntries(new URLSearchParams(search)),
    outcome: null,
  };
  state.authorizations.push(record);

  const jar = new Map();
  let url = new URL(`${target.mount}/auth${search}`, state.base);
  for (let hop = 0; hop < 10; hop++) {
    const answer = await fetch(url, {
      redirect: 'manual',
      headers: {
        [INTERNAL_HEADER]: INTERNAL_TOKEN,
        cookie: [...jar].map(([name, value]) => `${name}=${value}`).join('; '),
        'user-agent': req.headers['user-agent'] ?? 'oidc-test-provider',
        accept: req.headers.accept ?? '*/*',
      },
    });
    for (const cookie of answer.headers.getSetCookie()) {
      const [pair, ...attributes] = cookie.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((a) => /^\s*expires=.*1970/i.test(a) || /^\s*max-age=0\s*$/i.test(a));
      if (!value || expired) jar.delete(name);
      else jar.set(name, value);
    }
    const location = answer.headers.get('location');
    if (answer.status >= 300 && answer.status < 400 && location) {
      await answer.arrayBuffer();
      const next = new URL(location, url);
      if (next.origin === state.base && next.pathname.startsWith(`${target.mount}/`)) {
        url = next;
        continue;
      }
      // Leaving the provider: the authorization response, for the caller's browser.
      if (common) next.searchParams.delete('iss');
      if (target.kind === 'microsoft') {
        for (const name of ['code', 'refresh_token']) {
          const value = next.searchParams.get(name);
          if (value) state.issuedBy.set(value, target.tenant);
        }
      }
      record.outcome = outcomeOf(next);
      log(`${target.issuer}: authorization answered with ${record.outcome}`);
      res.writeHead(302, { location: next.href, 'cache-control': 'no-store' });
      res.end();
      return;
    }
    // An error oidc-provider shows instead of redirecting, or our interaction route's own error.
    const body = Buffer.from(await answer.arrayBuffer());
    record.outcome = `status ${answer.status}`;
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/octet-stream',
      'cache-control': 'no-store',
    });
    res.end(body);
    return;
  }
  record.outcome = 'too many redirects';
  sendJson(res, 500, { error: 'server_error', error_description: 'the authorization request did not settle within 10 redirects' });
}

// The interaction route: login and consent resolved as the admin API planned, no page shown.
async function interaction(target, req, res) {
  const { provider } = target;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (error) {
    sendJson(res, 400, { error: 'invalid_request', error_description: `no interaction in progress: ${error.message}` });
    return;
  }
  const plan = state.next;
  const where = target.kind === 'google' ? 'google' : `microsoft tenant ${target.tenant}`;
  const refuse = (description) => {
    log(`${target.issuer}: interaction refused: ${description}`);
    sendJson(res, 409, { error: 'login_not_planned', error_description: description });
  };

  if (!plan) {
    refuse(`the test chose no account for this login at ${where}: POST /admin/next-login first`);
    return;
  }
  const planWhere = plan.provider === 'google' ? 'google' : `microsoft tenant ${plan.tenant}`;
  const matches = !plan.provider
    || (plan.provider === target.kind && (target.kind === 'google' || !plan.tenant || plan.tenant === target.tenant));

  if (plan.deny) {
    if (!matches) {
      refuse(`the planned denial is for ${planWhere}, but the authorization request came to ${where}`);
      return;
    }
    state.next = null;
    log(`${target.issuer}: the user denies (as planned)`);
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (!matches) {
    refuse(`the planned login is for ${planWhere}, but the authorization request came to ${where}`);
    return;
  }
  if (!accountsOf(target.kind, target.tenant)?.has(plan.sub)) {
    refuse(`no account with sub ${JSON.stringify(plan.sub)} at ${where}: PUT /admin/accounts first`);
    return;
  }
  state.next = null;

  const { params } = details;
  const grant = new provider.Grant({ accountId: plan.sub, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  const grantId = await grant.save();
  log(`${target.issuer}: logged in as ${plan.sub} (as planned), scope ${params.scope ?? ''}`);
  await provider.interactionFinished(req, res, {
    select_account: {},
    login: { accountId: plan.sub, amr: ['pwd'] },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

// ---------------------------------------------------------------------------------------------
// The Microsoft "common" endpoints

const COMMON_ENDPOINTS = {
  authorization_endpoint: '/oauth2/v2.0/authorize',
  token_endpoint: '/oauth2/v2.0/token',
  jwks_uri: '/discovery/v2.0/keys',
  userinfo_endpoint: '/oidc/userinfo',
};

async function commonDiscovery(prefix) {
  const tenant = state.tenants.get(firstTenant());
  const answer = await fetch(`${tenant.issuer}/.well-known/openid-configuration`, { headers: { [INTERNAL_HEADER]: INTERNAL_TOKEN } });
  const metadata = await answer.json();
  for (const key of Object.keys(metadata)) {
    if (key.endsWith('_endpoint') || key === 'jwks_uri' || key === 'authorization_response_iss_parameter_supported') {
      delete metadata[key];
    }
  }
  return {
    ...metadata,
    issuer: `${state.base}/ms/{tenantid}/v2.0`,
    ...Object.fromEntries(Object.entries(COMMON_ENDPOINTS).map(([key, path]) => [key, `${state.base}${prefix}${path}`])),
  };
}

async function proxyToTenant(tid, path, req, res, body) {
  const tenant = state.tenants.get(tid);
  const headers = { [INTERNAL_HEADER]: INTERNAL_TOKEN };
  for (const name of ['content-type', 'authorization', 'accept']) {
    if (req.headers[name]) headers[name] = req.headers[name];
  }
  const answer = await fetch(`${tenant.issuer}${path}`, {
    method: req.method,
    headers,
    body: ['GET', 'HEAD'].includes(req.method) ? undefined : body,
  });
  const text = Buffer.from(await answer.arrayBuffer());
  const out = {};
  for (const name of ['content-type', 'cache-control', 'pragma', 'www-authenticate']) {
    const value = answer.headers.get(name);
    if (value) out[name] = value;
  }
  res.writeHead(answer.status, out);
  res.end(text);
  return { status: answer.status, text };
}

async function handleCommon(prefix, rest, url, req, res) {
  if (rest === '/v2.0/.well-known/openid-configuration' && req.method === 'GET') {
    sendJson(res, 200, await commonDiscovery(prefix), { 'cache-control': 'public, max-age=60' });
    return;
  }
  if (rest === COMMON_ENDPOINTS.authorization_endpoint && req.method === 'GET') {
    const plan = state.next;
    const tid = plan && plan.provider === 'microsoft' && plan.tenant && state.tenants.has(plan.tenant) ? plan.tenant : firstTenant();
    await foldAuthorization(state.tenants.get(tid), url.search, req, res, { common: true });
    return;
  }
  if (rest === COMMON_ENDPOINTS.token_endpoint && req.method === 'POST') {
    const body = await readBody(req);
    const form = new URLSearchParams(body.toString('utf8'));
    const tid = state.issuedBy.get(form.get('code') ?? '') ?? state.issuedBy.get(form.get('refresh_token') ?? '') ?? firstTenant();
    const { status, text } = await proxyToTenant(tid, '/token', req, res, body);
    if (status === 200) {
      try {
        const tokens = JSON.parse(text.toString('utf8'));
        for (const name of ['access_token', 'refresh_token']) {
          if (tokens[name]) state.issuedBy.set(tokens[name], tid);
        }
      } catch { /* not JSON: passed on as it is */ }
    }
    return;
  }
  if (rest === COMMON_ENDPOINTS.jwks_uri && req.method === 'GET') {
    // Every tenant signs with the one shared Microsoft keystore.
    await proxyToTenant(firstTenant(), '/jwks', req, res);
    return;
  }
  if (rest === COMMON_ENDPOINTS.userinfo_endpoint && ['GET', 'POST'].includes(req.method)) {
    const body = req.method === 'POST' ? await readBody(req) : undefined;
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]
      ?? new URLSearchParams(body?.toString('utf8') ?? '').get('access_token');
    const tid = state.issuedBy.get(bearer ?? '') ?? firstTenant();
    await proxyToTenant(tid, '/me', req, res, body);
    return;
  }
  sendJson(res, 404, { error: 'not_found', error_description: `no common endpoint ${req.method} ${prefix}${rest}` });
}

// ---------------------------------------------------------------------------------------------
// The admin API

function checkProvider(value, { optional = false } = {}) {
  if (optional && (value === undefined || value === null)) return undefined;
  if (value !== 'google' && value !== 'microsoft') throw badRequest('"provider" must be "google" or "microsoft"');
  return value;
}

function checkTenant(provider, tenant, { optional = false } = {}) {
  if (provider !== 'microsoft') {
    if (tenant !== undefined && tenant !== null) throw badRequest('"tenant" is only for provider "microsoft"');
    return undefined;
  }
  if (optional && (tenant === undefined || tenant === null)) return undefined;
  if (!state.tenants.has(tenant)) {
    throw badRequest(`unknown tenant ${JSON.stringify(tenant)}; configured: ${config.microsoft.tenants.join(', ')}`);
  }
  return tenant;
}

function status() {
  const kids = (kind) => state.keys[kind].map((k) => k.kid);
  return {
    google: { issuer: state.google.issuer, kids: kids('google'), down: state.down.google },
    microsoft: {
      common_discovery: `${state.base}/ms/common/v2.0/.well-known/openid-configuration`,
      issuers: Object.fromEntries([...state.tenants].map(([tid, t]) => [tid, t.issuer])),
      kids: kids('microsoft'),
      down: state.down.microsoft,
    },
    next_login: state.next,
  };
}

async function admin(path, req, res) {
  const route = `${req.method} ${path}`;
  switch (route) {
    case 'GET /admin/status':
      return sendJson(res, 200, status());
    case 'PUT /admin/accounts': {
      const list = await readJson(req);
      if (!Array.isArray(list)) throw badRequest('expected an array of accounts');
      const accounts = {
        google: new Map([['', new Map()]]),
        microsoft: new Map(config.microsoft.tenants.map((t) => [t, new Map()])),
      };
      for (const account of list) {
        const provider = checkProvider(account?.provider);
        const tenant = checkTenant(provider, account.tenant);
        if (typeof account.sub !== 'string' || !account.sub) throw badRequest('every account needs a non-empty "sub"');
        const claims = account.claims ?? {};
        if (typeof claims !== 'object' || Array.isArray(claims)) throw badRequest('"claims" must be an object');
        accounts[provider].get(tenant ?? '').set(account.sub, structuredClone(claims));
      }
      state.accounts = accounts;
      log(`accounts set: ${list.length}`);
      return sendJson(res, 200, { accounts: list.length });
    }
    case 'POST /admin/next-login': {
      const body = await readJson(req);
      if (body.deny === true) {
        const provider = checkProvider(body.provider, { optional: true });
        const tenant = provider ? checkTenant(provider, body.tenant, { optional: true }) : undefined;
        state.next = { deny: true, provider, tenant };
      } else {
        const provider = checkProvider(body.provider);
        const tenant = checkTenant(provider, body.tenant);
        if (typeof body.sub !== 'string' || !body.sub) throw badRequest('"sub" must be a non-empty string');
        if (!accountsOf(provider, tenant).has(body.sub)) {
          throw badRequest(`no account with sub ${JSON.stringify(body.sub)} for ${provider}${tenant ? ` tenant ${tenant}` : ''}`);
        }
        state.next = { provider, tenant, sub: body.sub };
      }
      return sendJson(res, 200, { next_login: state.next });
    }
    case 'DELETE /admin/next-login':
      state.next = null;
      return sendJson(res, 200, { next_login: null });
    case 'POST /admin/rotate-keys': {
      const body = await readJson(req);
      const kinds = body.provider === undefined || body.provider === null ? ['google', 'microsoft'] : [checkProvider(body.provider)];
      const keys = await Promise.all(kinds.map((kind) => newSigningKey(kind)));
      kinds.forEach((kind, i) => {
        state.keys[kind] = body.keep_old ? [keys[i], ...state.keys[kind]] : [keys[i]];
      });
      rebuild(kinds);
      log(`signing keys rotated for ${kinds.join(' and ')} (${body.keep_old ? 'old keys kept' : 'old keys dropped'})`);
      return sendJson(res, 200, status());
    }
    case 'POST /admin/down': {
      const body = await readJson(req);
      if (typeof body.down !== 'boolean') throw badRequest('"down" must be true or false');
      const kinds = body.provider === undefined || body.provider === null ? ['google', 'microsoft'] : [checkProvider(body.provider)];
      for (const kind of kinds) state.down[kind] = body.down;
      log(`${kinds.join(' and ')} ${body.down ? 'down (503)' : 'up'}`);
      return sendJson(res, 200, status());
    }
    case 'PUT /admin/redirect-uris': {
      const body = await readJson(req);
      const kinds = body.provider === undefined || body.provider === null ? ['google', 'microsoft'] : [checkProvider(body.provider)];
      try {
        checkRedirectUris('"redirect_uris"', body.redirect_uris);
      } catch (error) {
        throw badRequest(error.message);
      }
      for (const kind of kinds) config[kind].redirect_uris = [...body.redirect_uris];
      rebuild(kinds);
      log(`redirect URIs of ${kinds.join(' and ')} set`);
      return sendJson(res, 200, { redirect_uris: body.redirect_uris });
    }
    case 'GET /admin/authorizations':
      return sendJson(res, 200, state.authorizations);
    default:
      return sendJson(res, 404, { error: 'not_found', error_description: `no admin route ${route}` });
  }
}

// ---------------------------------------------------------------------------------------------
// The server

function unavailable(res) {
  sendJson(res, 503, { error: 'temporarily_unavailable', error_description: 'the provider is down (as the test asked)' }, { 'retry-after': '1' });
}

async function handle(req, res) {
  const url = new URL(req.url, state.base);
  const path = url.pathname;
  const internal = req.headers[INTERNAL_HEADER] === INTERNAL_TOKEN;
  if (!internal) log(`${req.method} ${path}`);

  if (path.startsWith('/admin/')) {
    await admin(path, req, res);
    return;
  }

  let target;
  if (path === '/google' || path.startsWith('/google/')) {
    target = state.google;
  } else {
    const ms = /^\/ms\/([^/]+)(\/.*)?$/.exec(path);
    if (ms) {
      const [, tid, rest = ''] = ms;
      if (state.down.microsoft) return unavailable(res);
      if (tid === 'common' || tid === 'organizations') {
        await handleCommon(`/ms/${tid}`, rest, url, req, res);
        return;
      }
      if (!rest.startsWith('/v2.0/') && rest !== '/v2.0') {
        sendJson(res, 404, { error: 'not_found', error_description: `no route ${path}` });
        return;
      }
      target = state.tenants.get(tid);
      if (!target) {
        // Entra's answer to an unknown tenant is an error page, never a redirect.
        sendJson(res, 400, { error: 'invalid_tenant', error_description: `tenant ${tid} not found` });
        return;
      }
    }
  }
  if (!target) {
    sendJson(res, 404, { error: 'not_found', error_description: `no route ${path}` });
    return;
  }
  if (state.down[target.kind]) return unavailable(res);

  if (path.startsWith(`${target.mount}/interaction/`)) {
    await interaction(target, req, res);
    return;
  }
  if (!internal && req.method === 'GET' && path === `${target.mount}/auth`) {
    await foldAuthorization(target, url.search, req, res, { common: false });
    return;
  }
  await dispatch(target, req, res);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    const statusCode = error.status ?? 500;
    if (statusCode >= 500) log(`internal error: ${error.stack ?? error}`);
    if (res.headersSent) {
      res.destroy();
    } else {
      sendJson(res, statusCode, { error: statusCode >= 500 ? 'server_error' : 'invalid_request', error_description: error.message });
    }
  });
});
server.keepAliveTimeout = 5000;

server.listen(requestedPort, '127.0.0.1', async () => {
  try {
    const { port } = server.address();
    state.base = `http://127.0.0.1:${port}`;
    const [google, microsoft] = await Promise.all([newSigningKey('google'), newSigningKey('microsoft')]);
    state.keys = { google: [google], microsoft: [microsoft] };
    rebuild();
    log(`ready on ${state.base}: google issuer ${state.google.issuer}, microsoft tenants ${config.microsoft.tenants.join(', ')}`);
    process.stdout.write(`${JSON.stringify({ port })}\n`);
  } catch (error) {
    log(`cannot start: ${error.stack ?? error}`);
    process.exit(1);
  }
});

if (args.exitOnStdinClose) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
