// lib.mjs -- what the end-to-end scripts share: the mock provider and airlock as child
// processes on free loopback ports, a test CA, a recording relay in front of the gateway
// (to see the request lines a client really sends), a child-process runner with a
// timeout, and the ok/FAIL reporter that closes with `N passed, N failed`.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, '..', '..');
export const build = process.env.AIRLOCK_BUILD || path.join(root, 'build');
export const AIRLOCK = path.join(build, 'airlock');
export const MOCK = path.join(build, 'mock_provider');
export const OPENAI_REAL = 'sk-real-openai-e2e-0123456789';
export const ANTHROPIC_REAL = 'sk-ant-real-e2e-0123456789';
export const CLIENT = 'sk-airlock-e2e-alice-0123456789';
export const DEFAULT = 'Hello from the mock provider, a deterministic answer.';
export const words = (n) => Array.from({ length: n }, (_, i) => `word${i + 1}`).join(' ');

// One suite: the children it started, its temporary directory and its counts.
export class Suite {
    constructor(name) {
        this.name = name;
        this.label = name;
        this.passed = 0;
        this.failed = 0;
        this.skipped = 0;
        this.children = [];
        this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `airlock-${name}-`));
        // a runner's timeout must not leave gateways and mocks behind
        for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'])
            process.on(sig, () => this.finish(`FAIL ${name}: interrupted by ${sig}`, true));
    }

    check(what, cond, detail) {
        if (cond) {
            this.passed++;
            console.log(`ok   [${this.label}] ${what}`);
        } else {
            this.failed++;
            const d = detail === undefined ? '' : ': ' + String(typeof detail === 'string' ? detail : JSON.stringify(detail)).slice(0, 1500);
            console.log(`FAIL [${this.label}] ${what}${d}`);
        }
        return !!cond;
    }

    // A requirement the gateway is known not to meet yet (reported to its owner), as
    // itest.py's gap: ok once it holds, otherwise `skip ...: KNOWN GAP: why` rather than a
    // failure. When the gap closes, make it a plain check.
    gap(what, cond, why, detail) {
        if (cond) return this.check(what, true);
        this.skipped++;
        const d = detail === undefined ? '' : ' ' + String(typeof detail === 'string' ? detail : JSON.stringify(detail)).slice(0, 300);
        console.log(`skip [${this.label}] ${what}: KNOWN GAP: ${why}${d}`);
        return false;
    }

    async test(what, fn) {
        try {
            await fn();
        } catch (e) {
            this.check(what, false, `threw ${e && e.constructor && e.constructor.name}: ${e && e.stack}`);
        }
    }

    finish(note, failure = false) {
        for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
        if (note) console.log(note);
        if (failure) this.failed++;
        // the logs, audits and records stay behind only when something failed, to be read
        if (this.failed) console.log(`(kept ${this.tmp} for inspection)`);
        else fs.rmSync(this.tmp, { recursive: true, force: true });
        console.log(`${this.passed} passed, ${this.failed} failed${this.skipped ? `, ${this.skipped} skipped` : ''}`);
        process.exit(this.failed ? 1 : 0);
    }

    // SKIP when the binaries are not there (a partial checkout), as run_e2e.sh always did
    requireBuilt() {
        if (!fs.existsSync(AIRLOCK) || !fs.existsSync(MOCK)) this.finish(`SKIP ${this.name}: ${AIRLOCK} or ${MOCK} not built`);
    }
}

// below Linux's ephemeral range, so no outgoing connection can take it before it is bound
export function freePort(tries = 50) {
    return new Promise((resolve, reject) => {
        const port = 20000 + Math.floor(Math.random() * 12000);
        const s = net.createServer();
        s.once('error', () => (tries > 0 ? freePort(tries - 1).then(resolve, reject) : reject(new Error('no free port'))));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(port)));
    });
}

export function waitPort(port, child, ms = 15000) {
    const end = Date.now() + ms;
    return new Promise((resolve) => {
        const attempt = () => {
            if (child.exitCode !== null) return resolve(false);
            const sock = net.connect(port, '127.0.0.1');
            sock.on('connect', () => { sock.destroy(); resolve(true); });
            sock.on('error', () => {
                sock.destroy();
                if (Date.now() > end) resolve(false);
                else setTimeout(attempt, 50);
            });
        };
        attempt();
    });
}

// The C mock provider; with record, every provider request lands in that directory as
// NNNN.req (bytes as received) and NNNN.body (the decoded body).
export function startMock(suite, { record } = {}) {
    return new Promise((resolve, reject) => {
        const args = ['--port', '0', '--openai-key', OPENAI_REAL, '--anthropic-key', ANTHROPIC_REAL];
        if (record) {
            fs.mkdirSync(record, { recursive: true });
            args.push('--record', record);
        }
        // its stderr to a file: a sanitizer build's leak report at exit (connections still
        // open when the suite ends) must not trail the suite's closing line
        const err = fs.openSync(path.join(suite.tmp, `mock-${process.pid}-${Date.now()}.log`), 'w');
        const c = spawn(MOCK, args, { stdio: ['ignore', 'pipe', err] });
        suite.children.push(c);
        let buf = '';
        c.stdout.on('data', (d) => {
            buf += d;
            const m = buf.match(/listening on 127\.0\.0\.1:(\d+)/);
            if (m) resolve({ port: Number(m[1]), child: c, record });
        });
        c.on('exit', (code) => reject(new Error(`mock exited ${code}`)));
    });
}

export async function mockStats(mock) {
    return (await fetch(`http://127.0.0.1:${mock.port}/mock/stats`)).json();
}

// The requests the mock recorded, oldest first: [{head, body}] (body parsed when JSON).
export function mockRecords(mock) {
    if (!mock.record || !fs.existsSync(mock.record)) return [];
    return fs.readdirSync(mock.record).filter((f) => f.endsWith('.req')).sort().map((f) => {
        const raw = fs.readFileSync(path.join(mock.record, f), 'latin1');
        const head = raw.slice(0, raw.indexOf('\r\n\r\n') + 2); // each header line ends in CRLF
        const text = fs.readFileSync(path.join(mock.record, f.replace(/\.req$/, '.body')), 'utf8');
        let body = null;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        return { name: f, head, text, bytes: Buffer.byteLength(text), body, line: head.split('\r\n')[0] };
    });
}

// The gateway's configuration; `port` and `mockPort` filled in, models and rules the
// scripts' own when given.
export function gatewayConfig({ port, mockPort, tls, models, rules, extra = '' }) {
    const listen = tls
        ? `[{address: "127.0.0.1:${port}", tls: {cert: "${tls.cert}", key: "${tls.key}"}}]`
        : `[{address: "127.0.0.1:${port}"}]`;
    models = models || [
        '{name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}',
        '{name: claude-3-5-haiku, provider: ant, upstream_model: claude-3-5-haiku-20241022, price: {input_per_mtok: 0.8, output_per_mtok: 4}}',
    ];
    rules = rules || [
        '{name: no-secrets, if: {detected: [secrets]}, then: {action: block}}',
        '{name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}',
        '{name: default, then: {action: allow}}',
    ];
    return `listen: ${listen}
keys:
  - {name: alice, team: red, key: "${CLIENT}"}
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:${mockPort}/v1", api_key: "${OPENAI_REAL}"}
  ant: {type: anthropic, base_url: "http://127.0.0.1:${mockPort}", api_key: "${ANTHROPIC_REAL}"}
models:
${models.map((m) => `  - ${m}`).join('\n')}
rules:
${rules.map((r) => `  - ${r}`).join('\n')}
audit: {dir: ./audit}
limits: {upstream_timeout_ms: 3000}
${extra}`;
}

// airlock serve in SUITE.tmp/NAME with the configuration made by configFor(port).
export async function startAirlock(suite, name, configFor) {
    const dir = path.join(suite.tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freePort();
        const cfg = path.join(dir, 'airlock.yaml');
        fs.writeFileSync(cfg, await configFor(port)); // may be async (to take more ports)
        const err = fs.openSync(path.join(dir, 'stderr.log'), 'w');
        const c = spawn(AIRLOCK, ['serve', '-c', cfg], { cwd: dir, stdio: ['ignore', 'ignore', err] });
        suite.children.push(c);
        if (await waitPort(port, c)) return { port, child: c, dir, audit: path.join(dir, 'audit') };
        c.kill('SIGKILL');
        console.log(`airlock (${name}) did not start: ${fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8').slice(-500)}`);
    }
    return null;
}

// What a sanitizer build (make SANITIZE=address,undefined) reported in the gateway's
// stderr, or '' when nothing.
export function sanitizerReport(g) {
    const err = fs.readFileSync(path.join(g.dir, 'stderr.log'), 'utf8');
    const m = err.match(/(ERROR: (Address|Leak)Sanitizer|runtime error:)[\s\S]{0,800}/);
    return m ? m[0] : '';
}

export async function stopAirlock(g) {
    return new Promise((resolve) => {
        if (g.child.exitCode !== null) return resolve(g.child.exitCode);
        const t = setTimeout(() => { g.child.kill('SIGKILL'); resolve('killed'); }, 15000);
        g.child.on('exit', (c) => { clearTimeout(t); resolve(c); });
        g.child.kill('SIGTERM');
    });
}

// airlock_requests_total samples from /metrics: [{labels: {...}, value}]
export async function metrics(base) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const out = [];
    for (const line of text.split('\n')) {
        const m = line.match(/^airlock_requests_total\{([^}]*)\}\s+(\d+)/);
        if (!m) continue;
        const labels = {};
        for (const kv of m[1].matchAll(/(\w+)="([^"]*)"/g)) labels[kv[1]] = kv[2];
        out.push({ labels, value: Number(m[2]) });
    }
    return out;
}

export function countRequests(samples, pred) {
    return samples.filter((s) => pred(s.labels)).reduce((n, s) => n + s.value, 0);
}

// `airlock audit show DIR` as records (one JSON object a line).
export function auditRecords(dir) {
    const r = spawnSync(AIRLOCK, ['audit', 'show', dir], { encoding: 'utf8', maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`airlock audit show: exit ${r.status}: ${r.stderr}`);
    return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

export function makeCA(dir) {
    const f = (n) => path.join(dir, n);
    fs.writeFileSync(f('ext.cnf'), 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    const run = (args) => {
        const r = spawnSync('openssl', args, { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
    };
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=airlock e2e CA']);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
    run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
        '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')]);
    return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

// A plain-HTTP relay in front of the gateway that writes down each request line and its
// headers as the client sent them (the gateway's audit keeps the path without its query).
// Bodies and answers pass through as streams, so SSE stays incremental.
export async function startRelay(targetPort) {
    const seen = [];
    const server = http.createServer((req, res) => {
        const entry = { method: req.method, url: req.url, headers: { ...req.headers } };
        seen.push(entry);
        const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
            (ur) => {
                res.writeHead(ur.statusCode, ur.statusMessage, ur.rawHeaders);
                ur.pipe(res);
            });
        up.on('error', (e) => {
            entry.error = e.message;
            if (!res.headersSent) {
                res.writeHead(502, { 'content-type': 'text/plain' });
                res.end(`relay: ${e.message}`);
            } else {
                res.destroy();
            }
        });
        req.pipe(up);
    });
    const port = await freePort();
    await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
    return { port, seen, close: () => server.close() };
}

// Runs a program to its end (or kills it after timeoutMs): {code, signal, stdout, stderr, ms}.
export function run(suite, cmd, args, { env, cwd, timeoutMs = 120000, input } = {}) {
    return new Promise((resolve) => {
        const t0 = Date.now();
        const c = spawn(cmd, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
        suite.children.push(c);
        let stdout = '', stderr = '';
        c.stdout.on('data', (d) => { stdout += d; });
        c.stderr.on('data', (d) => { stderr += d; });
        c.stdin.on('error', () => {});
        c.stdin.end(input === undefined ? '' : input);
        const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
        c.on('error', (e) => { stderr += String(e); });
        c.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
        });
    });
}

// The placeholders the gateway issues: [EMAIL_1_k3f9qa]
export const PLACEHOLDER = /\[[A-Z_]+_\d+_[a-z0-9]+\]/;
