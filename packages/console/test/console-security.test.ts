// The console's HTTP API on a directory store (core's FileKvStore), as a browser or a
// script would call it: every change needs the session cookie, the session's CSRF token
// and the console's own Origin; a refused request changes nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FileKvStore, MemoryLogger, RULES_PREFIX, RuleRepository } from '@meshlet/core';
import { RULE_KINDS } from 'meshlet/rule-kinds';
import { CSRF_HEADER, type RunningConsole, SESSION_COOKIE, startConsole } from '../src/index.js';

const TOKEN = 'console-test-token-0123456789';
const doc = (failures: number) =>
  JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'service', consecutiveFailures: failures }] } });

describe('console API security on a directory store', () => {
  let dir: string;
  let kv: FileKvStore;
  let running: RunningConsole;
  let origin: string;
  let logger: MemoryLogger;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-console-'));
    kv = new FileKvStore(dir);
    const kinds = RULE_KINDS;
    await new RuleRepository({ kv, kinds: kinds.map((k) => k.kind) }).apply(doc(3), { author: 'setup' });
    logger = new MemoryLogger();
    running = await startConsole({ kv, storeDescription: `directory ${dir}`, kinds, token: TOKEN, port: 0, logger });
    origin = running.url.replace(/\/$/, '');
  });
  after(async () => {
    await running?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const stored = async () => (await kv.get(`${RULES_PREFIX}orders`))?.value;

  async function login(author = 'alice'): Promise<{ cookie: string; csrf: string }> {
    const res = await fetch(`${origin}/api/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin },
      body: JSON.stringify({ token: TOKEN, author }),
    });
    assert.equal(res.status, 200);
    const setCookie = res.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0] as string;
    assert.ok(cookie.startsWith(`${SESSION_COOKIE}=`));
    const { csrf } = (await res.json()) as { csrf: string };
    return { cookie, csrf };
  }

  const post = (path: string, body: unknown, headers: Record<string, string>) =>
    fetch(`${origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

  const applyBody = (revision: number) => ({ service: 'orders', text: doc(9), revision, reason: 'test' });

  it('serves the page with a strict content security policy and no third-party origin', async () => {
    const res = await fetch(`${origin}/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    const html = await res.text();
    assert.match(html, /<script type="module" src="\/console.js">/);
    assert.doesNotMatch(html, /https?:\/\//);
    const js = await (await fetch(`${origin}/console.js`)).text();
    // Only the SVG namespace (a name, never fetched) looks like a URL.
    assert.doesNotMatch(js.replaceAll("'http://www.w3.org/2000/svg'", ''), /https?:\/\//);
    assert.doesNotMatch(js, /innerHTML/);
  });

  it('reads nothing without a session, and refuses a wrong token', async () => {
    for (const path of ['/api/services', '/api/service?service=orders', '/api/session']) {
      const res = await fetch(`${origin}${path}`);
      assert.equal(res.status, 401, path);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'MESHLET_CONSOLE_UNAUTHORIZED');
    }
    const res = await post('/api/login', { token: 'wrong-token-wrong-token', author: 'mallory' }, { origin });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { path: string } }).error.path, 'token');
    for (let i = 0; i < 5; i++)
      assert.equal((await post('/api/login', { token: `guess-${i}-guess-guess`, author: 'm' }, { origin })).status, 401);
    // Refused logins are per request: one log line per minute, however many come.
    assert.equal(logger.entries.filter((e) => e.fields?.code === 'MESHLET_CONSOLE_LOGIN_REFUSED').length, 1);
    const noName = await post('/api/login', { token: TOKEN, author: ' ' }, { origin });
    assert.equal(noName.status, 400);
    assert.equal(((await noName.json()) as { error: { path: string } }).error.path, 'author');
    // The author is recorded with every change and logged: no control character, DEL included.
    for (const author of ['bob\u0007', 'bob\u007f']) {
      const bad = await post('/api/login', { token: TOKEN, author }, { origin });
      assert.equal(bad.status, 400, JSON.stringify(author));
      assert.equal(((await bad.json()) as { error: { path: string } }).error.path, 'author');
    }
  });

  it('a change without the token, the CSRF token or the Origin changes nothing', async () => {
    const { cookie, csrf } = await login();
    const before = await stored();
    const { revision } = await new RuleRepository({ kv, kinds: RULE_KINDS.map((k) => k.kind) }).current('orders');
    const refusals: [string, Record<string, string>, number, string][] = [
      ['no session', { origin, [CSRF_HEADER]: csrf }, 401, 'MESHLET_CONSOLE_UNAUTHORIZED'],
      ['no CSRF token', { origin, cookie }, 403, 'MESHLET_CONSOLE_CSRF'],
      ['a wrong CSRF token', { origin, cookie, [CSRF_HEADER]: `${csrf.slice(1)}x` }, 403, 'MESHLET_CONSOLE_CSRF'],
      ['no Origin', { cookie, [CSRF_HEADER]: csrf }, 403, 'MESHLET_CONSOLE_ORIGIN'],
      ['a foreign Origin', { origin: 'http://evil.example', cookie, [CSRF_HEADER]: csrf }, 403, 'MESHLET_CONSOLE_ORIGIN'],
      ['another session’s CSRF token', { origin, cookie, [CSRF_HEADER]: (await login('bob')).csrf }, 403, 'MESHLET_CONSOLE_CSRF'],
    ];
    for (const [what, headers, status, code] of refusals) {
      for (const path of ['/api/apply', '/api/rollback']) {
        const body = path === '/api/apply' ? applyBody(revision) : { service: 'orders', to: 1, revision, reason: 'test' };
        const res = await post(path, body, headers);
        assert.equal(res.status, status, `${what} ${path}`);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, code, `${what} ${path}`);
      }
    }
    // A form post (what a foreign page can send without a preflight) is refused too.
    const form = await fetch(`${origin}/api/apply`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin, cookie, [CSRF_HEADER]: csrf },
      body: 'service=orders',
    });
    assert.equal(form.status, 415);
    // A rebound DNS name reaching 127.0.0.1 is not the console.
    const rebound = await new Promise<number | undefined>((resolve, reject) => {
      // node:http, since fetch sets Host itself.
      request(`${origin}/api/services`, { headers: { host: 'attacker.example', cookie } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      })
        .on('error', reject)
        .end();
    });
    assert.equal(rebound, 403);
    assert.equal(await stored(), before);
  });

  it('applies with compare-and-set, recording who, why and the diff; a stale revision changes nothing', async () => {
    const { cookie, csrf } = await login('carol');
    const headers = { origin, cookie, [CSRF_HEADER]: csrf };
    const svc = (await (await fetch(`${origin}/api/service?service=orders`, { headers: { cookie } })).json()) as {
      rules: { revision: number };
    };
    const noReason = await post('/api/apply', { ...applyBody(svc.rules.revision), reason: '' }, headers);
    assert.equal(noReason.status, 400);
    const stale = await post('/api/apply', applyBody(svc.rules.revision + 1000), headers);
    assert.equal(stale.status, 409);
    assert.equal(((await stale.json()) as { error: { code: string } }).error.code, 'MESHLET_RULE_CONFLICT');
    const bad = await post(
      '/api/apply',
      {
        service: 'orders',
        text: JSON.stringify({ service: 'orders', breaker: { rules: [{ level: 'sideways' }] } }),
        revision: svc.rules.revision,
        reason: 'x',
      },
      headers,
    );
    assert.equal(bad.status, 422);
    assert.match(((await bad.json()) as { error: { path: string } }).error.path, /^breaker\.rules\[0\]/);
    assert.equal(await stored(), doc(3));

    const ok = await post('/api/apply', { ...applyBody(svc.rules.revision), reason: 'more patience' }, headers);
    assert.equal(ok.status, 200);
    const applied = (await ok.json()) as { version: number; diff: string };
    assert.match(applied.diff, /\+\s+"consecutiveFailures": 9/);
    assert.equal(await stored(), doc(9));
    const view = (await (await fetch(`${origin}/api/service?service=orders`, { headers: { cookie } })).json()) as {
      history: { version: number; author: string; reason: string }[];
    };
    const last = view.history.at(-1);
    assert.deepEqual([last?.version, last?.author, last?.reason], [applied.version, 'carol', 'more patience']);
    const change = (await (
      await fetch(`${origin}/api/diff?service=orders&version=${applied.version}`, { headers: { cookie } })
    ).json()) as {
      diff: string;
    };
    assert.match(change.diff, /-\s+"consecutiveFailures": 3/);
    assert.ok(logger.entries.some((e) => e.fields?.code === 'MESHLET_CONSOLE_CHANGE' && e.fields?.author === 'carol'));
  });

  it('rolls back with compare-and-set on the revision the page showed: a stale one changes nothing', async () => {
    const { cookie, csrf } = await login('erin');
    const headers = { origin, cookie, [CSRF_HEADER]: csrf };
    const svc = (await (await fetch(`${origin}/api/service?service=orders`, { headers: { cookie } })).json()) as {
      rules: { revision: number };
    };
    const before = await stored();
    const stale = await post('/api/rollback', { service: 'orders', to: 1, revision: svc.rules.revision + 1000, reason: 'x' }, headers);
    assert.equal(stale.status, 409);
    assert.equal(((await stale.json()) as { error: { code: string } }).error.code, 'MESHLET_RULE_CONFLICT');
    assert.equal(await stored(), before);
  });

  it('validates as the CLI does, naming the field', async () => {
    const { cookie, csrf } = await login();
    const res = await post(
      '/api/validate',
      {
        service: 'orders',
        text: JSON.stringify({
          service: 'orders',
          route: { rules: [{ name: 'r', destinations: [{ group: { version: '1' }, weight: 90 }] }] },
        }),
      },
      { origin, cookie, [CSRF_HEADER]: csrf },
    );
    const r = (await res.json()) as { ok: boolean; error: { path: string; message: string } };
    assert.equal(r.ok, false);
    assert.match(r.error.path, /^route\.rules\[0\]\.destinations/);
    assert.match(r.error.message, /sum to 100/);
    const typo = (await (
      await post(
        '/api/validate',
        { service: 'orders', text: JSON.stringify({ service: 'orders', rout: {} }) },
        { origin, cookie, [CSRF_HEADER]: csrf },
      )
    ).json()) as { ok: boolean; error: { path: string } };
    assert.deepEqual([typo.ok, typo.error.path], [false, 'rout']);
  });

  it('`meshlet console` starts on 127.0.0.1 against the CLI’s --dir target and prints the token', async () => {
    // The `meshlet` bin of the package meshlet: it runs @meshlet/cli with the mesh's rule kinds.
    const bin = fileURLToPath(new URL('../../bin/meshlet.js', import.meta.resolve('meshlet')));
    const child = spawn(process.execPath, [bin, 'console', '--dir', dir, '--port', '0'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const printed = await new Promise<{ url: string; token: string }>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`meshlet console exited with ${code}: ${out}`)));
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          const url = /meshlet console: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
          const token = /token: (\S+)/.exec(out)?.[1];
          if (url && token) resolve({ url, token });
        });
      });
      assert.ok(printed.token.length >= 32);
      const page = await fetch(printed.url);
      assert.equal(page.status, 200);
      const res = await fetch(`${printed.url}api/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', origin: printed.url.replace(/\/$/, '') },
        body: JSON.stringify({ token: printed.token, author: 'dave' }),
      });
      assert.equal(res.status, 200);
    } finally {
      child.kill('SIGTERM');
    }
  });
});

/** A request with the Host and Origin a browser behind a proxy would send (fetch cannot set Host). */
function send(url: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        path,
        method: body === undefined ? 'GET' : 'POST',
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('console behind a TLS proxy, and beyond this machine', () => {
  const bin = () => fileURLToPath(new URL('../../bin/meshlet.js', import.meta.resolve('meshlet')));
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-console-proxy-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('`--public-origin https://…`: a login from the proxy’s origin works, any other https origin is refused', async () => {
    const child = spawn(
      process.execPath,
      [bin(), 'console', '--dir', dir, '--port', '0', '--public-origin', 'https://console.example.com'],
      {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', MESHLET_CONSOLE_TOKEN: TOKEN },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`meshlet console exited with ${code}: ${out}`)));
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          const found = /meshlet console: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1];
          if (found && out.includes('token: ')) resolve(found);
        });
      });
      // The proxy passes the public name on as the Host; the browser sends the public origin.
      const proxied = { host: 'console.example.com' };
      assert.equal((await send(url, '/', proxied)).status, 200);
      const login = { token: TOKEN, author: 'alice' };
      const ok = await send(url, '/api/login', { ...proxied, origin: 'https://console.example.com' }, login);
      assert.equal(ok.status, 200, ok.text);
      for (const origin of ['https://evil.example', 'http://console.example.com:8443', 'null']) {
        const refused = await send(url, '/api/login', { ...proxied, origin }, login);
        assert.equal(refused.status, 403, origin);
        assert.match(refused.text, /MESHLET_CONSOLE_ORIGIN/);
      }
      // Its own http:// origin still works.
      assert.equal((await send(url, '/api/login', { origin: url.replace(/\/$/, '') }, login)).status, 200);
    } finally {
      child.kill('SIGTERM');
    }
  });

  /** `meshlet console --dir <dir> --port 0 <args>` run to its exit (a refusal to start): its exit code and standard error. */
  const consoleRefusal = async (args: readonly string[]): Promise<{ code: number | null; err: string }> => {
    const child = spawn(process.execPath, [bin(), 'console', '--dir', dir, '--port', '0', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return { code, err };
  };

  it('refuses to start on a --host beyond loopback without --allowed-host or --public-origin: a usage error', {
    timeout: 30_000,
  }, async () => {
    const { code, err } = await consoleRefusal(['--host', '0.0.0.0']);
    assert.equal(code, 2, err);
    assert.match(err, /host: 0\.0\.0\.0 is reachable beyond this machine/);
    assert.match(err, /--allowed-host/);
    assert.match(err, /--public-origin/);
  });

  it('refuses a --console-token under the minimum as a usage error (exit 2), as its other flags', { timeout: 30_000 }, async () => {
    const { code, err } = await consoleRefusal(['--console-token', 'short']);
    assert.equal(code, 2, err);
    assert.match(err, /console token: at least 16 characters/);
  });

  it('answers on a --host beyond loopback to the names --allowed-host gives', async () => {
    const running = await startConsole({
      kv: new FileKvStore(dir),
      storeDescription: 'dir',
      kinds: RULE_KINDS,
      token: TOKEN,
      host: '0.0.0.0',
      port: 0,
      allowedHosts: ['console.internal:7443'],
      logger: new MemoryLogger(),
    });
    try {
      const url = running.url.replace('0.0.0.0', '127.0.0.1');
      assert.equal((await send(url, '/', { host: 'console.internal:7443' })).status, 200);
      assert.equal((await send(url, '/', { host: 'rebound.example:7443' })).status, 403);
      const login = await send(
        url,
        '/api/login',
        { host: 'console.internal:7443', origin: 'http://console.internal:7443' },
        {
          token: TOKEN,
          author: 'alice',
        },
      );
      assert.equal(login.status, 200, login.text);
    } finally {
      await running.close();
    }
  });

  it('refuses an allowed host or public origin that is not one, naming it', async () => {
    const base = { kv: new FileKvStore(dir), storeDescription: 'dir', kinds: RULE_KINDS, token: TOKEN, port: 0 };
    await assert.rejects(startConsole({ ...base, allowedHosts: ['a/b'] }), /allowedHosts\[0\]/);
    await assert.rejects(startConsole({ ...base, publicOrigins: ['https://console.example.com/path'] }), /publicOrigins\[0\]/);
    await assert.rejects(startConsole({ ...base, publicOrigins: ['ftp://console.example.com'] }), /publicOrigins\[0\]/);
  });
});
