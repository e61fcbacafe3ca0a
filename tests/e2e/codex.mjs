// codex.mjs -- the Codex CLI itself (npm @openai/codex, `codex exec`), as a user points it
// at airlock: CODEX_HOME holds a config.toml whose model provider has base_url = the
// gateway's /v1, wire_api = "responses" and env_key naming the variable that holds an
// airlock key. It speaks only the Responses API (POST /v1/responses, streamed). The
// gateway's provider is the C mock, which records what reached it; a relay between codex
// and the gateway writes down the request lines codex sent. Offline throughout.
// Prints ok/FAIL lines and the closing `N passed, N failed`.
import fs from 'node:fs';
import path from 'node:path';
import {
    CLIENT, DEFAULT, OPENAI_REAL, PLACEHOLDER, Suite, auditRecords, countRequests, gatewayConfig, here, makeCA, metrics, mockRecords,
    mockStats, run, sanitizerReport, startAirlock, startMock, startRelay, stopAirlock, words,
} from './lib.mjs';

const s = new Suite('codex');
s.requireBuilt();
const CODEX = path.join(here, 'node_modules', '@openai', 'codex', 'bin', 'codex.js');
const MODEL = 'gpt-4o-mini';
const PEM = '-----BEGIN RSA PRIVATE KEY-----\n' +
    'MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z1kJKZ4fl1rBfX7rHnLDEyqE\n' +
    'k2Fq8Jw4v8vJm2JcQxY7wq9H3tH6fXJ8Q0cTgZ3mQ9bYyL9a0v2VfTHsm6R1pXq\n' +
    '-----END RSA PRIVATE KEY-----';
const version = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', '@openai', 'codex', 'package.json'))).version;
console.log(`Codex CLI ${version}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({ port, mockPort: mock.port }));
if (!gw) s.finish('FAIL codex: the gateway did not start', true);
const gwBase = `http://127.0.0.1:${gw.port}`;
const relay = await startRelay(gw.port);
const home = path.join(s.tmp, 'home');
const codexHome = path.join(s.tmp, 'codex-home');
const work = path.join(s.tmp, 'project');
for (const d of [home, codexHome, work]) fs.mkdirSync(d);

// What a user writes to point Codex at airlock (docs/clients.md shows the same), plus no
// retries (a refusal is final) and no update checks or analytics.
function writeConfig(baseUrl, compactLimit) {
    fs.writeFileSync(path.join(codexHome, 'config.toml'), `model = "${MODEL}"
model_provider = "airlock"
${compactLimit ? `model_auto_compact_token_limit = ${compactLimit}\n` : ''}check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[model_providers.airlock]
name = "airlock"
base_url = "${baseUrl}/v1"
wire_api = "responses"
env_key = "AIRLOCK_API_KEY"
request_max_retries = 0
stream_max_retries = 0
`);
}
writeConfig(`http://127.0.0.1:${relay.port}`);

// The environment is built, not inherited: no key or base URL of the machine's own leaks in.
const env = { PATH: process.env.PATH, HOME: home, CODEX_HOME: codexHome, LANG: 'C.UTF-8', TERM: 'dumb', NO_COLOR: '1', AIRLOCK_API_KEY: CLIENT };
let nlast = 0;
async function codex(prompt, extra = [], opts = {}) {
    const last = path.join(s.tmp, `last-message-${++nlast}.txt`);
    const r = await run(s, process.execPath, [CODEX, 'exec', '--skip-git-repo-check', ...(opts.persist ? [] : ['--ephemeral']),
        '--strict-config', '--color', 'never', '-o', last, ...extra, prompt], { env, cwd: work, timeoutMs: 90000, ...opts });
    r.last = fs.existsSync(last) ? fs.readFileSync(last, 'utf8') : null;
    return r;
}
const said = (r) => `exit ${r.code}${r.signal ? ' ' + r.signal : ''}; last message: ${JSON.stringify(r.last)}; stdout: ${r.stdout.slice(-800)}; stderr: ${r.stderr.slice(-1200)}`;
const userTexts = (body) => (Array.isArray(body?.input) ? body.input : [])
    .filter((i) => (i.type === 'message' || !i.type) && i.role === 'user')
    .map((i) => (typeof i.content === 'string' ? i.content : (i.content || []).map((c) => c.text || '').join('\n')));

await s.test('codex exec: the answer', async () => {
    const r = await codex('say hello');
    s.check('codex exec prints the mock provider\'s answer, exit 0', r.code === 0 && r.last !== null &&
        r.last.trim() === DEFAULT && r.stdout.includes(DEFAULT), said(r));

    const posts = relay.seen.filter((q) => q.method === 'POST');
    s.check('its requests go to POST /v1/responses with the airlock key', posts.length >= 1 &&
        posts.every((q) => q.url === '/v1/responses' && q.headers.authorization === `Bearer ${CLIENT}`),
    relay.seen.map((q) => `${q.method} ${q.url}`));
    const recs = mockRecords(mock);
    const last = recs.at(-1);
    s.check('the mock got POST /v1/responses with the provider key, streamed, the configured model', last &&
        last.line.startsWith('POST /v1/responses ') && last.head.includes(`authorization: Bearer ${OPENAI_REAL}\r\n`) &&
        !last.head.includes(CLIENT) && last.body?.stream === true && last.body?.model === MODEL &&
        userTexts(last.body).some((t) => t.includes('say hello')), last && { line: last.line, head: last.head, keys: Object.keys(last.body || {}) });

    const tools = (last?.body?.tools || []).map((t) => t.type);
    s.check('its tools reach the provider as sent: functions and the hosted web_search', tools.includes('function') &&
        tools.includes('web_search') && last.body.store === false, tools);
    const m = await metrics(gwBase);
    s.check('/metrics counts them under endpoint="/v1/responses"', countRequests(m, (l) =>
        l.endpoint === '/v1/responses' && l.status === '200') === posts.length, m);
    const audit = auditRecords(gw.audit);
    const req = audit.filter((a) => a.type === 'request').at(-1);
    const resp = audit.filter((a) => a.type === 'response' && a.meta?.id === req?.meta?.id).at(-1);
    s.check('the audit holds the request (key, endpoint, model) and its answer (200, usage)', req &&
        req.meta.key === 'alice' && req.meta.endpoint === '/v1/responses' && req.meta.model === MODEL &&
        resp && resp.meta.status === 200 && resp.meta.usage?.output_tokens === 8, { req: req && req.meta, resp: resp && resp.meta });
});

await s.test('codex exec --json', async () => {
    const r = await codex('MOCK:words=6', ['--json']);
    const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const msg = events.filter((e) => e.type === 'item.completed' && e.item?.type === 'agent_message').at(-1);
    const done = events.find((e) => e.type === 'turn.completed');
    s.check('codex exec --json: the agent message and the turn\'s usage as relayed', r.code === 0 &&
        msg?.item.text === words(6) && done?.usage?.output_tokens === 6 && done.usage.input_tokens > 0, events.length ? events : said(r));
});

await s.test('codex exec: redaction', async () => {
    const before = mockRecords(mock).length;
    const r = await codex('write to jane.doe@example.com MOCK:split=Sent to %PH% now.');
    const recs = mockRecords(mock).slice(before);
    const sent = userTexts(recs.at(-1)?.body).join('\n');
    s.check('the email reached the mock as a placeholder, nowhere verbatim', recs.length >= 1 && PLACEHOLDER.test(sent) &&
        sent.includes('write to [') && !recs.some((x) => x.text.includes('jane.doe@example.com')), sent.slice(-300));
    s.check('codex prints the address restored (the placeholder split over one-character events)', r.code === 0 &&
        r.last?.trim() === 'Sent to jane.doe@example.com now.' && !PLACEHOLDER.test(r.stdout), said(r));
});

await s.test('codex exec --json: reasoning summary redaction', async () => {
    // MOCK:think answers with a reasoning item whose summary is the answer's text, before the message
    const r = await codex('mail jane.doe@example.com MOCK:think MOCK:split=Mailed %PH% today.', ['--json']);
    const events = r.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const items = events.filter((e) => e.type === 'item.completed').map((e) => e.item);
    const reasoning = items.find((i) => i.type === 'reasoning');
    const msg = items.filter((i) => i.type === 'agent_message').at(-1);
    s.check('the reasoning summary and the message both show the address restored', r.code === 0 &&
        reasoning?.text?.includes('Mailed jane.doe@example.com today.') && msg?.text === 'Mailed jane.doe@example.com today.' &&
        !PLACEHOLDER.test(r.stdout), items.length ? items : said(r));
});

for (const [what, prompt, input] of [
    ['an AWS key id in the prompt', 'deploy with AKIAIOSFODNN7EXAMPLE please', undefined],
    ['a PEM private key piped on stdin', '-', `use this key:\n${PEM}\n`],
]) {
    await s.test(`codex exec: blocked: ${what}`, async () => {
        const before = (await mockStats(mock)).requests;
        const seen = relay.seen.length;
        const r = await codex(prompt, [], { input });
        const out = r.stdout + r.stderr;
        const after = (await mockStats(mock)).requests;
        s.check(`${what}: codex reports the gateway's 403 naming the rule and exits non-zero`, r.code !== 0 &&
            /403/.test(out) && /no-secrets/.test(out), said(r));
        s.check(`${what}: it asked (POST /v1/responses) and nothing reached the provider`, after === before &&
            relay.seen.slice(seen).some((q) => q.method === 'POST' && q.url === '/v1/responses'), { before, after });
        const req = auditRecords(gw.audit).filter((a) => a.type === 'request').at(-1);
        s.check(`${what}: audited as blocked by no-secrets`, req && req.meta.verdict === 'block' && req.meta.rule === 'no-secrets' &&
            req.meta.endpoint === '/v1/responses', req && req.meta);
    });
}

// a provider failing once the answer has started: the gateway ends the stream with
// response.failed, which is what codex reads; it must report the failure, not hang or
// print half an answer as if it were whole
for (const [what, fault, msg] of [
    ['an error event mid-stream', 'MOCK:error_mid', /stream disconnected before completion: The server had an error/],
    ['a connection reset mid-stream', 'MOCK:reset_mid', /stream disconnected before completion: The provider's stream broke off/],
]) {
    await s.test(`codex exec: ${what}`, async () => {
        const r = await codex(`${fault} MOCK:words=20`);
        s.check(`${what}: codex reports the failed turn with the reason and exits non-zero`, r.code !== 0 && r.signal === null &&
            msg.test(r.stderr) && !r.last?.includes('word1'), said(r));
    });
}

await s.test('codex exec resume: compaction', async () => {
    // a low auto-compaction limit: the second turn starts by compacting the first (the mock
    // counts ~10k input tokens a request), which this provider does with a summarising
    // /v1/responses request carrying the whole conversation
    writeConfig(`http://127.0.0.1:${relay.port}`, 3000);
    const n0 = mockRecords(mock).length;
    const r1 = await codex('remember bob.smith@example.org MOCK:words=2', [], { persist: true });
    const r2 = await codex('MOCK:words=3', ['resume', '--last'], { persist: true });
    const recs = mockRecords(mock).slice(n0);
    s.check('a resumed session compacts its context through the gateway and answers', r1.code === 0 && r2.code === 0 &&
        /context compacted/.test(r2.stdout + r2.stderr) && recs.length >= 3 && r2.last?.trim() === words(3),
    `${said(r2)}; requests: ${recs.length}`);
    s.check('the address from turn 1 is a placeholder in every request that carries it again, the compaction included',
        recs.every((x) => !x.text.includes('bob.smith@example.org')) && recs.length >= 3 &&
        recs.slice(1).every((x) => PLACEHOLDER.test(x.text)), recs.map((x) => x.text.length));
    writeConfig(`http://127.0.0.1:${relay.port}`);
});

await s.test('codex exec: a TLS gateway', async () => {
    // the gateway on TLS with a private CA; codex trusts it through SSL_CERT_FILE
    const pki = makeCA(s.tmp);
    const tls = await startAirlock(s, 'tls', (port) => gatewayConfig({ port, mockPort: mock.port, tls: pki }));
    writeConfig(`https://localhost:${tls.port}`);
    const r = await codex('MOCK:words=4', [], { env: { ...env, SSL_CERT_FILE: pki.ca } });
    s.check('codex exec against https://localhost with the CA in SSL_CERT_FILE', r.code === 0 && r.last?.trim() === words(4), said(r));
    s.check('the TLS gateway: SIGTERM, exit 0', (await stopAirlock(tls)) === 0);
});

await s.test('codex exec: straight to the gateway', async () => {
    writeConfig(gwBase);
    const r = await codex('MOCK:words=3');
    s.check('codex exec with base_url at the gateway itself (no relay)', r.code === 0 && r.last?.trim() === words(3), said(r));
});

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
