// A real OpenID provider (node-oidc-provider) for the console's sign-in tests.
//
//   node provider.mjs <redirect uri> <client secret> <accounts file>
//
// Listens on an ephemeral loopback port and prints its issuer URL as the first line of stdout.
// One static client, `portcullis-console` (client_secret_basic, PKCE S256 required, the one
// redirect URI given); the accounts are the JSON object in the accounts file, login → claims,
// for example {"alice": {"email": "alice@example.com", "email_verified": true}}: the login is
// the `sub`. The file is read at each sign-in, so a test may write it after starting us.
// Signing in is the provider's development interaction: GET the login page, POST the form
// (`prompt=login`, `login=<sub>`, any password), follow the redirects. Consent is implied for
// the one first-party client, so the redirects end at the redirect URI. ID tokens are signed
// with RS256, or with the algorithm in the environment variable ID_TOKEN_ALG (ES256).

import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [redirectUri, clientSecret, accountsFile] = process.argv.slice(2);
if (!redirectUri || !clientSecret || !accountsFile) {
  console.error('usage: node provider.mjs <redirect uri> <client secret> <accounts file>');
  process.exit(2);
}

// Fresh signing keys for every run: an RSA key (RS256, the default) and an EC key (ES256).
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'portcullis-console',
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: process.env.ID_TOKEN_ALG || 'RS256',
    }],
    jwks: { keys: [{ ...rsa, kid: 'rsa-1', use: 'sig' }, { ...ec, kid: 'ec-1', use: 'sig' }] },
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    // Put the scopes' claims in the ID token (the console reads no userinfo).
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['portcullis-test-cookie-key'] },
    async findAccount(ctx, sub) {
      const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
      const claims = Object.hasOwn(accounts, sub) ? accounts[sub] : undefined;
      if (!claims) return undefined;
      return { accountId: sub, async claims() { return { sub, ...claims }; } };
    },
    // The console is first party: the grant of what it asks for is given without a consent page.
    async loadExistingGrant(ctx) {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email');
      grant.addOIDCClaims(['email', 'email_verified']);
      await grant.save();
      return grant;
    },
  });
  server.on('request', provider.callback());
  console.log(issuer);
});

// The test kills this process; end quietly on a signal too.
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
