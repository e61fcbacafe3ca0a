// e2e.mjs -- starts the mock provider and two airlocks (plain HTTP, and TLS with a test CA
// made by openssl), then runs sdk_tests.mjs against each (the TLS run trusts the CA through
// NODE_EXTRA_CA_CERTS, as a user would). Prints the closing `N passed, N failed`.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import {
    AIRLOCK, CLIENT, Suite, gatewayConfig, here, makeCA, sanitizerReport, startAirlock, startMock, stopAirlock,
} from './lib.mjs';

const s = new Suite('e2e');
s.requireBuilt();
{
    const r = spawnSync(AIRLOCK, ['serve', '-c', '/nonexistent/airlock.yaml'], { encoding: 'utf8' });
    if ((r.stderr || '').includes('not built yet')) s.finish('SKIP e2e: airlock serve is not built yet');
}

function runSdk(base, label, extraEnv, mockPort) {
    return new Promise((resolve) => {
        const c = spawn(process.execPath, [path.join(here, 'sdk_tests.mjs'), base, CLIENT, label, String(mockPort)],
            { env: { ...process.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'inherit'] });
        s.children.push(c);
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

try {
    const mock = await startMock(s);
    const plain = await startAirlock(s, 'plain', (port) => gatewayConfig({ port, mockPort: mock.port }));
    if (!plain) s.finish('FAIL e2e: the gateway did not start', true);
    let [p, f] = await runSdk(`http://127.0.0.1:${plain.port}`, 'plain', {}, mock.port);
    s.passed += p; s.failed += f;

    const pki = makeCA(s.tmp);
    const tls = await startAirlock(s, 'tls', (port) => gatewayConfig({ port, mockPort: mock.port, tls: pki }));
    if (!tls) {
        s.label = 'tls';
        s.check('the TLS gateway started', false);
    } else {
        [p, f] = await runSdk(`https://localhost:${tls.port}`, 'tls', { NODE_EXTRA_CA_CERTS: pki.ca }, mock.port);
        s.passed += p; s.failed += f;
    }
    for (const [name, g] of [['plain', plain], ['tls', tls]]) {
        if (!g) continue;
        const code = await stopAirlock(g);
        s.label = name;
        s.check('SIGTERM: exit 0', code === 0, `exit ${code}`);
        s.check('no sanitizer report in the gateway\'s stderr', sanitizerReport(g) === '', sanitizerReport(g));
    }
} catch (e) {
    s.check('e2e', false, e.stack);
}
s.finish();
