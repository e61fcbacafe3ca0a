// e2e.mjs -- starts the mock provider and two airlocks (plain HTTP, and TLS with a test CA
// made by openssl), then runs sdk_tests.mjs against each (the TLS run trusts the CA through
// NODE_EXTRA_CA_CERTS, as a user would). Prints the closing `N passed, N failed`.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const build = process.env.AIRLOCK_BUILD || path.join(root, 'build');
const AIRLOCK = path.join(build, 'airlock');
const MOCK = path.join(build, 'mock_provider');
const OPENAI_REAL = 'sk-real-openai-e2e-0123456789';
const ANTHROPIC_REAL = 'sk-ant-real-e2e-0123456789';
const CLIENT = 'sk-airlock-e2e-alice-0123456789';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'airlock-e2e-'));
const children = [];

function finish(passed, failed, note) {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    if (note) console.log(note);
    // the logs, audits and keys stay behind only when something failed, to be read
    if (failed) console.log(`(kept ${tmp} for inspection)`);
    else fs.rmSync(tmp, { recursive: true, force: true });
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}

// a runner's timeout must not leave gateways and mocks behind
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(0, 1, `FAIL e2e: interrupted by ${sig}`));

// below Linux's ephemeral range, so no outgoing connection can take it before airlock binds
function freePort(tries = 50) {
    return new Promise((resolve, reject) => {
        const port = 20000 + Math.floor(Math.random() * 12000);
        const s = net.createServer();
        s.once('error', () => (tries > 0 ? freePort(tries - 1).then(resolve, reject) : reject(new Error('no free port'))));
        s.listen(port, '127.0.0.1', () => s.close(() => resolve(port)));
    });
}

function waitPort(port, child, ms = 15000) {
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

function startMock() {
    return new Promise((resolve, reject) => {
        const c = spawn(MOCK, ['--port', '0', '--openai-key', OPENAI_REAL, '--anthropic-key', ANTHROPIC_REAL],
            { stdio: ['ignore', 'pipe', 'inherit'] });
        children.push(c);
        let buf = '';
        c.stdout.on('data', (d) => {
            buf += d;
            const m = buf.match(/listening on 127\.0\.0\.1:(\d+)/);
            if (m) resolve(Number(m[1]));
        });
        c.on('exit', (code) => reject(new Error(`mock exited ${code}`)));
    });
}

function config(port, mockPort, tls) {
    const listen = tls
        ? `[{address: "127.0.0.1:${port}", tls: {cert: "${tls.cert}", key: "${tls.key}"}}]`
        : `[{address: "127.0.0.1:${port}"}]`;
    return `listen: ${listen}
keys:
  - {name: alice, team: red, key: "${CLIENT}"}
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:${mockPort}/v1", api_key: "${OPENAI_REAL}"}
  ant: {type: anthropic, base_url: "http://127.0.0.1:${mockPort}", api_key: "${ANTHROPIC_REAL}"}
models:
  - {name: gpt-4o-mini, provider: oai, price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}
  - {name: claude-3-5-haiku, provider: ant, upstream_model: claude-3-5-haiku-20241022, price: {input_per_mtok: 0.8, output_per_mtok: 4}}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
audit: {dir: ./audit}
limits: {upstream_timeout_ms: 3000}
`;
}

async function startAirlock(name, mockPort, tls) {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    for (let attempt = 0; attempt < 3; attempt++) {
        const port = await freePort();
        const cfg = path.join(dir, 'airlock.yaml');
        fs.writeFileSync(cfg, config(port, mockPort, tls));
        const err = fs.openSync(path.join(dir, 'stderr.log'), 'w');
        const c = spawn(AIRLOCK, ['serve', '-c', cfg], { cwd: dir, stdio: ['ignore', 'ignore', err] });
        children.push(c);
        if (await waitPort(port, c)) return { port, child: c, dir };
        c.kill('SIGKILL');
        console.log(`airlock (${name}) did not start: ${fs.readFileSync(path.join(dir, 'stderr.log'), 'utf8').slice(-500)}`);
    }
    return null;
}

function makeCA() {
    const f = (n) => path.join(tmp, n);
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

function runSdk(base, label, extraEnv, mockPort) {
    return new Promise((resolve) => {
        const c = spawn(process.execPath, [path.join(here, 'sdk_tests.mjs'), base, CLIENT, label, String(mockPort)],
            { env: { ...process.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'inherit'] });
        children.push(c);
        let out = '';
        c.stdout.on('data', (d) => { out += d; process.stdout.write(d); });
        const timer = setTimeout(() => c.kill('SIGKILL'), 120000);
        c.on('exit', () => {
            clearTimeout(timer);
            const m = out.match(/(\d+) passed, (\d+) failed\s*$/);
            resolve(m ? [Number(m[1]), Number(m[2])] : [0, 1]);
        });
    });
}

if (!fs.existsSync(AIRLOCK) || !fs.existsSync(MOCK)) finish(0, 0, `SKIP e2e: ${AIRLOCK} or ${MOCK} not built`);
{
    const r = spawnSync(AIRLOCK, ['serve', '-c', '/nonexistent/airlock.yaml'], { encoding: 'utf8' });
    if ((r.stderr || '').includes('not built yet')) finish(0, 0, `SKIP e2e: airlock serve is not built yet`);
}

let passed = 0, failed = 0;
try {
    const mockPort = await startMock();
    const plain = await startAirlock('plain', mockPort, null);
    if (!plain) finish(0, 1, 'FAIL e2e: the gateway did not start');
    let [p, f] = await runSdk(`http://127.0.0.1:${plain.port}`, 'plain', {}, mockPort);
    passed += p; failed += f;

    const pki = makeCA();
    const tls = await startAirlock('tls', mockPort, pki);
    if (!tls) {
        failed++;
        console.log('FAIL [tls] the TLS gateway did not start');
    } else {
        [p, f] = await runSdk(`https://localhost:${tls.port}`, 'tls', { NODE_EXTRA_CA_CERTS: pki.ca }, mockPort);
        passed += p; failed += f;
    }
    for (const [name, g] of [['plain', plain], ['tls', tls]]) {
        if (!g) continue;
        const code = await new Promise((resolve) => {
            const t = setTimeout(() => { g.child.kill('SIGKILL'); resolve('killed'); }, 15000);
            g.child.on('exit', (c) => { clearTimeout(t); resolve(c); });
            g.child.kill('SIGTERM');
        });
        if (code === 0) {
            passed++;
            console.log(`ok   [${name}] SIGTERM: exit 0`);
        } else {
            failed++;
            console.log(`FAIL [${name}] SIGTERM: exit ${code}`);
        }
    }
} catch (e) {
    failed++;
    console.log(`FAIL e2e: ${e.message}`);
}
finish(passed, failed);
