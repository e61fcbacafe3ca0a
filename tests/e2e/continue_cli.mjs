// continue_cli.mjs -- Continue's own CLI (npm @continuedev/cli, `cn -p`), headless, with a
// Continue config.yaml whose models have `apiBase` at airlock (the same model entries the
// IDE extensions read): an `openai` provider model (Chat Completions) and an `anthropic` one
// (Messages). Offline against the mock; telemetry off. A relay between cn and the gateway
// writes down the paths it used. Prints ok/FAIL lines and the closing `N passed, N failed`.
import fs from 'node:fs';
import path from 'node:path';
import {
    ANTHROPIC_REAL, CLIENT, DEFAULT, OPENAI_REAL, PLACEHOLDER, Suite, gatewayConfig, here, mockRecords, mockStats, run,
    sanitizerReport, startAirlock, startMock, startRelay, stopAirlock, words,
} from './lib.mjs';

const s = new Suite('continue_cli');
s.requireBuilt();
const CN = path.join(here, 'node_modules', '@continuedev', 'cli', 'dist', 'cn.js');
const version = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', '@continuedev', 'cli', 'package.json'))).version;
console.log(`Continue CLI ${version}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({ port, mockPort: mock.port }));
if (!gw) s.finish('FAIL continue_cli: the gateway did not start', true);
const relay = await startRelay(gw.port);
const base = `http://127.0.0.1:${relay.port}`;
const home = path.join(s.tmp, 'home');
const work = path.join(s.tmp, 'project');
fs.mkdirSync(home);
fs.mkdirSync(work);
const EMAIL = 'jane.doe@example.com';

// what a user puts in ~/.continue/config.yaml (docs/clients.md shows the same)
const configs = {
    openai: `name: airlock
version: 1.0.0
schema: v1
models:
  - name: gpt-4o-mini via airlock
    provider: openai
    model: gpt-4o-mini
    apiBase: ${base}/v1
    apiKey: ${CLIENT}
    roles: [chat, edit, apply]
`,
    anthropic: `name: airlock-anthropic
version: 1.0.0
schema: v1
models:
  - name: claude via airlock
    provider: anthropic
    model: claude-3-5-haiku
    apiBase: ${base}/v1/
    apiKey: ${CLIENT}
    roles: [chat, edit]
`,
};
for (const [name, text] of Object.entries(configs)) fs.writeFileSync(path.join(s.tmp, `${name}.yaml`), text);

const env = {
    PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8', TERM: 'dumb', NO_COLOR: '1',
    CONTINUE_GLOBAL_DIR: path.join(home, '.continue'), CONTINUE_CLI_ENABLE_TELEMETRY: '0', CONTINUE_METRICS_ENABLED: '0',
};
const cn = (config, prompt) => run(s, process.execPath, [CN, '-p', '--config', path.join(s.tmp, `${config}.yaml`), prompt],
    { env, cwd: work, timeoutMs: 90000 });
const said = (r) => `exit ${r.code}${r.signal ? ' ' + r.signal : ''}; stdout: ${r.stdout.slice(0, 600)}; stderr: ${r.stderr.slice(-600)}`;
const lastPost = () => relay.seen.filter((q) => q.method === 'POST').at(-1);

await s.test('cn -p: openai provider', async () => {
    const n0 = mockRecords(mock).length;
    const r = await cn('openai', 'say hello');
    const q = lastPost();
    const recs = mockRecords(mock).slice(n0);
    s.check('cn -p prints the mock\'s answer', r.code === 0 && r.stdout.trim() === DEFAULT, said(r));
    s.check('it asked POST /v1/chat/completions with the airlock key, streamed; the provider key went upstream',
        q?.url === '/v1/chat/completions' && q.headers.authorization === `Bearer ${CLIENT}` && recs.length === 1 &&
        recs[0].body?.stream === true && recs[0].head.includes(`authorization: Bearer ${OPENAI_REAL}\r\n`),
    { url: q?.url, recs: recs.map((x) => x.line) });
});

await s.test('cn -p: redaction', async () => {
    const n0 = mockRecords(mock).length;
    const r = await cn('openai', `mail ${EMAIL} MOCK:split=Sent to %PH% now.`);
    const recs = mockRecords(mock).slice(n0);
    s.check('the email reached the mock as a placeholder and is printed restored', r.code === 0 &&
        r.stdout.trim() === `Sent to ${EMAIL} now.` && recs.length === 1 && !recs[0].text.includes(EMAIL) &&
        PLACEHOLDER.test(recs[0].text), said(r));
});

await s.test('cn -p: a secret', async () => {
    const before = (await mockStats(mock)).requests;
    const r = await cn('openai', 'deploy with AKIAIOSFODNN7EXAMPLE');
    s.check('a secret: cn reports the 403 naming the rule, exits non-zero, nothing reaches the provider', r.code !== 0 &&
        /403/.test(r.stdout + r.stderr) && /no-secrets/.test(r.stdout + r.stderr) && (await mockStats(mock)).requests === before,
    said(r));
});

await s.test('cn -p: anthropic provider', async () => {
    const n0 = mockRecords(mock).length;
    const r = await cn('anthropic', 'MOCK:words=3');
    const recs = mockRecords(mock).slice(n0);
    s.check('an anthropic model (apiBase .../v1/): POST /v1/messages, the answer', r.code === 0 &&
        r.stdout.trim() === words(3) && lastPost()?.url === '/v1/messages' && recs.length === 1 &&
        recs[0].head.includes(`x-api-key: ${ANTHROPIC_REAL}\r\n`), said(r));
});

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
