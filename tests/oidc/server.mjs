// A real third-party OAuth2/OIDC server for the integration tests: panva's oidc-provider 9.13.3
// (pinned in package.json), configured as a generic provider the daemon's `provider = "oauth2"`
// mode must work against. In-memory state only: a restart forgets every token.
//
// usage: node server.mjs [--config FILE.json]      (cwd anywhere; `npm ci` in this directory first)
//
// Knobs, as environment variables or as keys of the JSON config file (the file wins):
//   PORT             port       0 = any free port (default 0)
//   AT_TTL           atTtl      access-token lifetime, seconds (default 60)
//   RT_TTL           rtTtl      refresh-token lifetime, seconds (default 86400)
//   DEVICE_CODE_TTL  deviceCodeTtl  device_code / user_code lifetime, seconds (default 600)
//   CLOCK_TOLERANCE  clockTolerance seconds of leeway on expiry checks (default 0, library default 15)
//   AUTO_ACCOUNT     account    subject an interaction logs in as (default "alice")
//   EXIT_ON_STDIN_EOF exitOnStdinEof  "1": exit when stdin closes, so a crashed test run leaves no orphan
//                    clients    the client list (default: the three clients below, dev secrets)
//                    routes     oidc-provider's `routes` option: where each endpoint is mounted,
//                               e.g. {"token": "/o/token/"} for a server whose paths end with '/'
//                    queries    a query an endpoint requires, by route name, e.g.
//                               {"token": "p=B2C_1_refreshd"}: see requireQuery below
//                    recordFile a file that gets one JSON line per POST to an endpoint: what
//                               the client sent, with every secret value replaced by "*"
//
// stdout carries exactly one startup line, `oidc-provider listening on http://127.0.0.1:PORT`,
// then one line per auto-approved interaction and oidc-provider's own NOTICE lines; none of them
// ever holds a token, code or secret.
// Errors (grant.error and the other *.error events, with oidc-provider's error_detail, which the
// HTTP response never shows) go to stderr, one line each.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const GRANT_TYPES = [DEVICE_GRANT, 'refresh_token', 'authorization_code'];
// Registered without a port: for application_type "native", oidc-provider 9 matches a loopback
// redirect URI whatever its port (RFC 8252 section 7.3), so a client may listen on any free port.
const REDIRECT_URIS = ['http://127.0.0.1/callback'];

function nativeClient(clientId, clientSecret, method) {
  return {
    client_id: clientId,
    ...(clientSecret === undefined ? {} : { client_secret: clientSecret }),
    application_type: 'native',
    token_endpoint_auth_method: method,
    grant_types: GRANT_TYPES,
    response_types: ['code'],
    redirect_uris: REDIRECT_URIS,
  };
}

const DEFAULT_CLIENTS = [
  nativeClient('refreshd-basic', 'refreshd-basic-secret', 'client_secret_basic'),
  nativeClient('refreshd-post', 'refreshd-post-secret', 'client_secret_post'),
  nativeClient('refreshd-public', undefined, 'none'),
];

function loadConfigFile(argv) {
  const at = argv.indexOf('--config');
  if (at === -1) return {};
  if (!argv[at + 1]) throw new Error('--config needs a file path');
  return JSON.parse(fs.readFileSync(argv[at + 1], 'utf8'));
}

const file = loadConfigFile(process.argv.slice(2));
const knob = (key, envName, fallback) => file[key] ?? process.env[envName] ?? fallback;
const PORT = Number(knob('port', 'PORT', 0));
const AT_TTL = Number(knob('atTtl', 'AT_TTL', 60));
const RT_TTL = Number(knob('rtTtl', 'RT_TTL', 24 * 3600));
const DEVICE_CODE_TTL = Number(knob('deviceCodeTtl', 'DEVICE_CODE_TTL', 600));
const CLOCK_TOLERANCE = Number(knob('clockTolerance', 'CLOCK_TOLERANCE', 0));
const AUTO_ACCOUNT = String(knob('account', 'AUTO_ACCOUNT', 'alice'));
const EXIT_ON_STDIN_EOF = String(knob('exitOnStdinEof', 'EXIT_ON_STDIN_EOF', '0')) === '1';
const CLIENTS = file.clients ?? DEFAULT_CLIENTS;
const ROUTES = file.routes ?? {};
const QUERIES = file.queries ?? {};
const RECORD_FILE = file.recordFile;

function configuration() {
  return {
    clients: CLIENTS,
    routes: ROUTES, // merged over the defaults (/token, /device/auth, /token/revocation, ...)
    scopes: ['openid', 'offline_access'],
    features: {
      deviceFlow: { enabled: true }, // POST /device/auth, GET|POST /device
      revocation: {
        enabled: true, // POST /token/revocation
        // The library default, spelled out: a client revokes only its own tokens.
        allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId,
      },
      introspection: {
        enabled: true, // POST /token/introspection
        // A confidential client may introspect any token (the tests' resource-server view);
        // a public one only its own, as in the library default.
        allowedPolicy: async (ctx, client, token) =>
          client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
      },
      // The dev login form would be two more HTML forms to drive; /interaction/:uid below
      // approves login and consent in one GET instead.
      devInteractions: { enabled: false },
    },
    // PKCE (S256, the only method oidc-provider 9 accepts) for every client, not only public
    // ones: the daemon must always send it, and a confidential client omitting it should fail.
    pkce: { required: () => true },
    rotateRefreshToken: true, // every refresh_token grant returns a new RT, the old one is consumed
    ttl: {
      AccessToken: AT_TTL,
      AuthorizationCode: 60,
      DeviceCode: DEVICE_CODE_TTL,
      RefreshToken: RT_TTL,
      Grant: RT_TTL,
      IdToken: 3600,
      Interaction: 600,
      Session: 24 * 3600,
    },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, name: `Test ${sub}` }) }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // The library default (15 s) lets an expired access token through /me for 15 s.
    clockTolerance: CLOCK_TOLERANCE,
  };
}

const ERROR_EVENTS = [
  'grant.error', 'introspection.error', 'revocation.error', 'device_authorization.error',
  'code_verification.error', 'device_resume.error', 'authorization.error', 'userinfo.error',
];

function listen(provider, issuer) {
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  for (const event of ERROR_EVENTS) {
    // error_detail says why ("refresh token already used"); the response only says invalid_grant.
    provider.on(event, (ctx, err) => console.error(event, err.error, '-', err.error_detail ?? err.error_description));
  }
  const callback = provider.callback();

  // Plays the user at the login and consent prompts: logs in as ?account= (or AUTO_ACCOUNT) and
  // grants every requested scope. Only public oidc-provider APIs are used.
  async function autoApprove(req, res) {
    const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
    const requested = new URL(req.url, issuer).searchParams.get('account');
    const accountId = requested ?? session?.accountId ?? AUTO_ACCOUNT;
    const existing = grantId && session?.accountId === accountId ? await provider.Grant.find(grantId) : undefined;
    const grant = existing ?? new provider.Grant({ accountId, clientId: params.client_id });
    grant.addOIDCScope(String(params.scope ?? 'openid'));
    const result = { login: { accountId }, consent: { grantId: await grant.save() } };
    console.log(`auto-approved interaction prompt=${prompt.name} account=${accountId} client=${params.client_id} scope="${params.scope}"`);
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }

  function dispatch(req, res) {
    if (!requireQuery(req, res)) return;
    if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(req.url.split('?')[0])) {
      autoApprove(req, res).catch((err) => {
        console.error('interaction.error', err);
        res.statusCode = 500;
        res.end('interaction failed');
      });
      return;
    }
    callback(req, res);
  }

  return (req, res) => {
    if (RECORD_FILE && req.method === 'POST') {
      // Every POST as sent, also one the server then refuses.
      record(req).then(() => dispatch(req, res), (err) => {
        console.error('record.error', err);
        res.statusCode = 500;
        res.end('recording failed');
      });
      return;
    }
    dispatch(req, res);
  };
}

// An endpoint URI may carry a query that selects something at the server (RFC 6749 sections
// 3.1 and 3.2 say a client MUST keep it; Azure AD B2C picks the policy by ?p=). oidc-provider
// itself routes by path and reads a POST's parameters from the body only, so it would accept a
// request that lost the query; like B2C, this server answers 404 instead.
function requireQuery(req, res) {
  const [path, query = ''] = req.url.split(/\?(.*)/s, 2);
  for (const [name, wanted] of Object.entries(QUERIES)) {
    if (ROUTES[name] === path && query !== wanted) {
      console.error(`query.error ${req.method} ${path} without ?${wanted}`);
      res.statusCode = 404;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ error: 'invalid_request', error_description: 'no such endpoint' }));
      return false;
    }
  }
  return true;
}

// Form fields whose values are secrets; the record only says that they were sent.
const SECRET_FIELDS = new Set([
  'client_secret', 'code', 'code_verifier', 'device_code', 'refresh_token', 'token', 'client_assertion',
]);

// Reads the body, appends the record, and leaves the body on req.body: oidc-provider's parser
// takes an already-read body from there (lib/shared/selective_body.js) and parses it itself.
async function record(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const form = {};
  const contentType = req.headers['content-type'] ?? null;
  if (contentType?.startsWith('application/x-www-form-urlencoded')) {
    for (const [key, value] of new URLSearchParams(body.toString('utf8'))) {
      form[key] = SECRET_FIELDS.has(key) ? '*' : value;
    }
  }
  // Basic credentials: the client id only (RFC 6749 section 2.3.1 form-encodes it).
  const [scheme, credentials] = (req.headers.authorization ?? '').split(' ');
  const basicClientId = scheme?.toLowerCase() === 'basic' && credentials
    ? decodeURIComponent(Buffer.from(credentials, 'base64').toString('utf8').split(':')[0].replace(/\+/g, ' '))
    : null;
  const line = { method: req.method, target: req.url, contentType, basicClientId, form };
  fs.appendFileSync(RECORD_FILE, `${JSON.stringify(line)}\n`);
  req.body = body;
}

const server = http.createServer();
// The issuer holds the port, so the provider is built only once the socket is bound.
server.listen(PORT, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  server.on('request', listen(provider, issuer));
  console.log(`oidc-provider listening on ${issuer}`);
});

if (EXIT_ON_STDIN_EOF) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
