// claude_code.mjs -- Claude Code itself (npm @anthropic-ai/claude-code, `claude -p`), as a
// user runs it against airlock: ANTHROPIC_BASE_URL at the gateway, ANTHROPIC_API_KEY an
// airlock key, a throw-away HOME and config dir, everything optional switched off so that
// it runs offline. The gateway's provider is the C mock, which records what reached it. A
// relay between claude and the gateway writes down the request lines claude sent.
// Prints ok/FAIL lines and the closing `N passed, N failed`.
import fs from 'node:fs';
import path from 'node:path';
import {
    ANTHROPIC_REAL, CLIENT, DEFAULT, PLACEHOLDER, Suite, auditRecords, countRequests, gatewayConfig, here, makeCA, metrics,
    mockRecords, mockStats, run, sanitizerReport, startAirlock, startMock, startRelay, stopAirlock, words,
} from './lib.mjs';

const s = new Suite('claude_code');
s.requireBuilt();
const CLAUDE = path.join(here, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';
const PEM = '-----BEGIN RSA PRIVATE KEY-----\n' +
    'MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z1kJKZ4fl1rBfX7rHnLDEyqE\n' +
    'k2Fq8Jw4v8vJm2JcQxY7wq9H3tH6fXJ8Q0cTgZ3mQ9bYyL9a0v2VfTHsm6R1pXq\n' +
    '-----END RSA PRIVATE KEY-----';

const version = JSON.parse(fs.readFileSync(path.join(here, 'node_modules', '@anthropic-ai', 'claude-code', 'package.json'))).version;
console.log(`Claude Code ${version}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({
    port, mockPort: mock.port,
    // claude-opus-4-8: what this version selects when ANTHROPIC_MODEL is not set
    models: [`{name: ${SONNET}, provider: ant}`, `{name: ${HAIKU}, provider: ant}`, '{name: claude-opus-4-8, provider: ant}'],
}));
if (!gw) s.finish('FAIL claude_code: the gateway did not start', true);
const relay = await startRelay(gw.port);
const home = path.join(s.tmp, 'home');
const work = path.join(s.tmp, 'project');
fs.mkdirSync(home);
fs.mkdirSync(work);

// The environment is built, not inherited: no key or base URL of the machine's own leaks in.
const env = {
    PATH: process.env.PATH,
    HOME: home,
    CLAUDE_CONFIG_DIR: path.join(home, '.claude'),
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    NO_COLOR: '1',
    ANTHROPIC_BASE_URL: `http://127.0.0.1:${relay.port}`,
    ANTHROPIC_API_KEY: CLIENT,
    // the models it asks for must be in the gateway's models list
    ANTHROPIC_MODEL: SONNET,
    ANTHROPIC_DEFAULT_SONNET_MODEL: SONNET,
    ANTHROPIC_DEFAULT_OPUS_MODEL: SONNET,
    ANTHROPIC_DEFAULT_HAIKU_MODEL: HAIKU,
    ANTHROPIC_SMALL_FAST_MODEL: HAIKU,
    // offline and quiet: no telemetry, update checks, error reports or feature flags
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    DISABLE_TELEMETRY: '1',
    DISABLE_AUTOUPDATER: '1',
    DISABLE_ERROR_REPORTING: '1',
    DISABLE_GROWTHBOOK: '1',
    DISABLE_INSTALLATION_CHECKS: '1',
    DISABLE_BUG_COMMAND: '1',
    DISABLE_COST_WARNINGS: '1',
    CLAUDE_CODE_DISABLE_TERMINAL_TITLE: '1',
};
const claude = (args, opts = {}) => run(s, CLAUDE, args, { env, cwd: work, timeoutMs: 90000, ...opts });
const said = (r) => `exit ${r.code}${r.signal ? ' ' + r.signal : ''}; stdout: ${r.stdout.slice(0, 600)}; stderr: ${r.stderr.slice(-600)}`;
const lastUserText = (body) => {
    const users = (body?.messages || []).filter((m) => m.role === 'user');
    const c = users.at(-1)?.content;
    return typeof c === 'string' ? c : (c || []).filter((b) => b.type === 'text').map((b) => b.text).join('\n');
};
const gwBase = `http://127.0.0.1:${gw.port}`;

await s.test('claude -p: the answer', async () => {
    const r = await claude(['-p', 'say hello']);
    s.check('claude -p prints the mock provider\'s answer, exit 0', r.code === 0 && r.stdout.trim() === DEFAULT, said(r));

    const posts = relay.seen.filter((q) => q.method === 'POST');
    s.check('its model requests go to POST /v1/messages?beta=true', posts.length >= 1 &&
        posts.every((q) => q.url === '/v1/messages?beta=true'), relay.seen.map((q) => `${q.method} ${q.url}`));
    s.check('nothing but /v1/messages (and a HEAD / probe) is asked of the gateway', relay.seen.every((q) =>
        (q.method === 'POST' && q.url.startsWith('/v1/messages')) || (q.method === 'HEAD' && q.url === '/')),
    relay.seen.map((q) => `${q.method} ${q.url}`));
    s.check('it sends the airlock key and a claude-cli user agent', posts.every((q) =>
        (q['headers']['x-api-key'] === CLIENT || q.headers.authorization === `Bearer ${CLIENT}`) &&
        /^claude-cli\//.test(q.headers['user-agent'] || '')), posts.map((q) => q.headers));

    const recs = mockRecords(mock);
    const last = recs.at(-1);
    s.check('the mock got one /v1/messages request per model request', recs.length === posts.length &&
        recs.every((r2) => r2.line.startsWith('POST /v1/messages ')), recs.map((r2) => r2.line));
    s.check('the provider key replaced the airlock key upstream', last && last.head.includes(`x-api-key: ${ANTHROPIC_REAL}`) &&
        !last.head.includes(CLIENT) && !/^authorization:/im.test(last.head), last && last.head);
    const beta = posts.at(-1)?.headers['anthropic-beta'];
    s.check('anthropic-beta and anthropic-version forwarded unchanged', !!beta && last &&
        last.head.includes(`anthropic-beta: ${beta}\r\n`) &&
        last.head.includes(`anthropic-version: ${posts.at(-1).headers['anthropic-version']}\r\n`), { beta, head: last && last.head });
    s.check('a real Claude Code body: streamed, the configured model, a large system prompt and tools',
        last && last.body && last.body.stream === true && last.body.model === SONNET && last.text.length > 20000 &&
        Array.isArray(last.body.tools) && last.body.tools.length > 0 && lastUserText(last.body).includes('say hello'),
        last && { model: last.body?.model, stream: last.body?.stream, bytes: last.text.length });

    const m = await metrics(gwBase);
    const n = countRequests(m, (l) => l.endpoint === '/v1/messages' && l.route === `ant/${SONNET}` && l.status === '200');
    s.check('/metrics counts them under endpoint="/v1/messages"', n === posts.length, m);

    const audit = auditRecords(gw.audit);
    const req = audit.filter((a) => a.type === 'request').at(-1);
    const resp = audit.filter((a) => a.type === 'response' && a.meta?.id === req?.meta?.id).at(-1);
    s.check('the audit holds the request (key, endpoint, model) and its answer (200, usage)', req &&
        req.meta.key === 'alice' && req.meta.endpoint === '/v1/messages' && req.meta.model === SONNET && req.meta.stream === true &&
        resp && resp.meta.status === 200 && resp.meta.usage.output_tokens === 8 &&
        resp.meta.usage.input_tokens === Math.floor(last.bytes / 4), { req: req && req.meta, resp: resp && resp.meta });
});

// Claude Code's system prompt carries its commit co-author address, so under an e-mail
// redaction rule each of its requests is rewritten; an `exempt` entry for that one value
// lets them through unchanged while any other address is still redacted.
await s.test('claude -p: its own no-reply address exempt', async () => {
    const before = auditRecords(gw.audit).filter((a) => a.type === 'request').at(-1);
    s.check('without an exemption: the plain request is redacted for noreply@anthropic.com',
        before && before.meta.verdict === 'redact' && before.meta.findings.some((f) => f.detector === 'email'),
        before && before.meta);
    const ex = await startAirlock(s, 'exempt', (port) => gatewayConfig({
        port, mockPort: mock.port,
        models: [`{name: ${SONNET}, provider: ant}`, `{name: ${HAIKU}, provider: ant}`, '{name: claude-opus-4-8, provider: ant}'],
        extra: 'exempt:\n  - {detector: email, values: ["noreply@anthropic.com"]}\n',
    }));
    if (!ex) return s.check('the exempting gateway starts', false);
    const exEnv = { ...env, ANTHROPIC_BASE_URL: `http://127.0.0.1:${ex.port}` };
    const n0 = mockRecords(mock).length;
    const r = await claude(['-p', 'say hello'], { env: exEnv });
    const recs = mockRecords(mock).slice(n0);
    const reqs = auditRecords(ex.audit).filter((a) => a.type === 'request');
    s.check('exempt: answered, every request allowed with no e-mail finding', r.code === 0 && reqs.length >= 1 &&
        reqs.every((q) => q.meta.verdict === 'allow' && !q.meta.findings.some((f) => f.detector === 'email')),
    reqs.map((q) => q.meta));
    s.check('exempt: the address reached the provider as written', recs.length >= 1 &&
        recs.at(-1).text.includes('noreply@anthropic.com'), recs.length);
    const r2 = await claude(['-p', 'write to jane.doe@example.com'], { env: exEnv });
    const last = mockRecords(mock).at(-1);
    s.check('exempt: another address is still redacted', r2.code === 0 && last && !last.text.includes('jane.doe@example.com') &&
        last.text.includes('noreply@anthropic.com'), said(r2));
    await stopAirlock(ex);
});

await s.test('claude -p: straight to the gateway', async () => {
    const r = await claude(['-p', 'MOCK:words=4'], { env: { ...env, ANTHROPIC_BASE_URL: gwBase } });
    s.check('claude -p with ANTHROPIC_BASE_URL at the gateway itself (no relay)', r.code === 0 &&
        r.stdout.trim() === 'word1 word2 word3 word4', said(r));
});

await s.test('claude -p: a TLS gateway', async () => {
    // the gateway on TLS with a private CA: claude (Bun) trusts it through NODE_EXTRA_CA_CERTS
    const pki = makeCA(s.tmp);
    const tls = await startAirlock(s, 'tls', (port) => gatewayConfig({
        port, mockPort: mock.port, tls: pki, models: [`{name: ${SONNET}, provider: ant}`, `{name: ${HAIKU}, provider: ant}`],
    }));
    const r = await claude(['-p', 'MOCK:words=5'], {
        env: { ...env, ANTHROPIC_BASE_URL: `https://localhost:${tls.port}`, NODE_EXTRA_CA_CERTS: pki.ca },
    });
    s.check('claude -p against https://localhost with the CA in NODE_EXTRA_CA_CERTS', r.code === 0 &&
        r.stdout.trim() === words(5), said(r));
    const bare = await claude(['-p', 'MOCK:words=5'], {
        env: { ...env, ANTHROPIC_BASE_URL: `https://localhost:${tls.port}`, CLAUDE_CODE_MAX_RETRIES: '0' },
    });
    s.check('without the CA it refuses the gateway\'s certificate (non-zero exit, no answer)', bare.code !== 0 &&
        !bare.stdout.includes('word1'), said(bare));
    s.check('the TLS gateway: SIGTERM, exit 0', (await stopAirlock(tls)) === 0);
});

await s.test('claude -p: its default model', async () => {
    // no model variables: Claude Code 2.1.197 selects claude-opus-4-8[1m], sent as the model
    // claude-opus-4-8 with the context-1m beta; airlock's models list must hold that name
    const { ANTHROPIC_MODEL, ANTHROPIC_DEFAULT_OPUS_MODEL, ...rest } = env;
    const n0 = mockRecords(mock).length;
    const r = await claude(['-p', 'MOCK:words=2'], { env: rest });
    const sent = mockRecords(mock).slice(n0).at(-1);
    s.check('without ANTHROPIC_MODEL it asks for claude-opus-4-8 with the context-1m beta, and gets the answer', r.code === 0 &&
        r.stdout.trim() === 'word1 word2' && sent?.body?.model === 'claude-opus-4-8' && /context-1m-/.test(sent.head),
    `${said(r)}; model: ${sent?.body?.model}`);
});

await s.test('claude -p: ANTHROPIC_AUTH_TOKEN', async () => {
    const { ANTHROPIC_API_KEY, ...rest } = env;
    const r = await claude(['-p', 'MOCK:words=2'], { env: { ...rest, ANTHROPIC_AUTH_TOKEN: CLIENT } });
    const q = relay.seen.filter((x) => x.method === 'POST').at(-1);
    s.check('the airlock key as ANTHROPIC_AUTH_TOKEN (Authorization: Bearer) works too', r.code === 0 &&
        r.stdout.trim() === 'word1 word2' && q?.headers.authorization === `Bearer ${CLIENT}` && !q.headers['x-api-key'],
    `${said(r)}; headers: ${JSON.stringify(q && q.headers)}`);
});

await s.test('claude -p --output-format json', async () => {
    const r = await claude(['-p', '--output-format', 'json', 'MOCK:words=7']);
    let j = null;
    try { j = JSON.parse(r.stdout); } catch { /* checked below */ }
    s.check('--output-format json: the result and the provider\'s usage as relayed', r.code === 0 && j &&
        j.is_error === false && j.result === 'word1 word2 word3 word4 word5 word6 word7' && j.usage?.output_tokens === 7,
    j || said(r));
});

await s.test('claude -p: redaction', async () => {
    const before = mockRecords(mock).length;
    const r = await claude(['-p', 'write to jane.doe@example.com MOCK:user_split']);
    const recs = mockRecords(mock).slice(before);
    const sent = lastUserText(recs.at(-1)?.body);
    const ph = (sent.match(/write to (\[[A-Z_]+_\d+_[a-z0-9]+\])/) || [])[1];
    s.check('the email reached the mock as a placeholder, nowhere verbatim', recs.length === 1 && !!ph &&
        !recs.some((x) => x.text.includes('jane.doe@example.com') || x.head.includes('jane.doe')), { ph, sent: sent.slice(-300) });
    // the mock echoes the user's message one character per event: the placeholder comes back
    // split across events and claude must print the address, never the placeholder
    s.check('claude prints the address restored (placeholder split over one-character events)', r.code === 0 &&
        r.stdout.includes('write to jane.doe@example.com MOCK:user_split') && !PLACEHOLDER.test(r.stdout) &&
        !(ph && r.stdout.includes(ph)), said(r));
    const audit = auditRecords(gw.audit);
    const req = audit.filter((a) => a.type === 'request').at(-1);
    s.check('the audit records the redaction: verdict redact, an email finding', req && req.meta.verdict === 'redact' &&
        req.meta.findings.some((f) => f.detector === 'email'), req && req.meta);
});

// A tool loop: the mock answers with a tool_use for Claude Code's Read tool, claude reads
// the file and sends its content back as a tool_result in the next request, which the
// gateway scans like any prompt (what a tool reads leaves the machine too).
await s.test('claude -p: a tool_use loop', async () => {
    const notes = path.join(work, 'notes.txt');
    fs.writeFileSync(notes, 'Meeting notes. Contact: bob.smith@example.org for the budget.\n');
    const n0 = mockRecords(mock).length;
    const r = await claude(['-p', `summarise the notes MOCK:tool_use=Read:{"file_path":"${notes}"}`]);
    const recs = mockRecords(mock).slice(n0);
    const second = recs[1]?.body;
    const results = (second?.messages || []).flatMap((m) => (Array.isArray(m.content) ? m.content : []))
        .filter((b) => b.type === 'tool_result');
    const resultText = JSON.stringify(results);
    s.check('claude ran the Read tool the mock asked for and sent its result back (two model requests)', r.code === 0 &&
        recs.length === 2 && results.length === 1 && resultText.includes('Meeting notes') &&
        (second.messages || []).some((m) => m.role === 'assistant' && JSON.stringify(m.content).includes('toolu_mock')),
    `${said(r)}; requests: ${recs.length}; results: ${resultText.slice(0, 300)}`);
    s.check('the address in the file it read left as a placeholder', !recs.some((x) => x.text.includes('bob.smith@example.org')) &&
        PLACEHOLDER.test(resultText), resultText.slice(0, 300));
    s.check('claude printed the final answer', r.stdout.trim().endsWith(DEFAULT), said(r));

    fs.writeFileSync(notes, 'deploy credentials: AKIAIOSFODNN7EXAMPLE\n');
    const before = (await mockStats(mock)).requests;
    const r2 = await claude(['-p', `summarise the notes MOCK:tool_use=Read:{"file_path":"${notes}"}`]);
    const recs2 = mockRecords(mock).slice(n0 + 2);
    s.check('a secret in the file it read: the tool_result request is refused (403), the key never leaves', r2.code !== 0 &&
        /403/.test(r2.stdout + r2.stderr) && (await mockStats(mock)).requests === before + 1 &&
        !recs2.some((x) => x.text.includes('AKIAIOSFODNN7EXAMPLE')), `${said(r2)}; requests: ${recs2.length}`);
});

// a provider failing once the answer has started. Claude Code then asks again without
// streaming (CLAUDE_CODE_MAX_RETRIES=0 stops its other retries): after an error event
// (529 overloaded, relayed) the mock answers that one whole, so claude prints the full
// answer; after a reset the mock resets the whole answer too, the gateway says 502, and
// claude reports it and exits non-zero.
await s.test('claude -p: a stream that breaks', async () => {
    const n0 = mockRecords(mock).length;
    const r = await claude(['-p', 'MOCK:error_mid MOCK:words=20'], { env: { ...env, CLAUDE_CODE_MAX_RETRIES: '0' } });
    const recs = mockRecords(mock).slice(n0);
    s.check('an error event mid-stream: claude asks again without streaming and prints that whole answer', r.code === 0 &&
        r.stdout.trim() === words(20) && recs.length === 2 && recs[0].body?.stream === true && recs[1].body?.stream !== true,
    `${said(r)}; streams: ${JSON.stringify(recs.map((x) => x.body?.stream))}`);
    const r2 = await claude(['-p', 'MOCK:reset_mid MOCK:words=20'], { env: { ...env, CLAUDE_CODE_MAX_RETRIES: '0' } });
    s.check('a reset mid-stream, and again mid-answer: claude reports the gateway\'s 502 and exits non-zero', r2.code !== 0 &&
        r2.signal === null && /API Error: 502/.test(r2.stdout + r2.stderr) && /Connection reset/.test(r2.stdout + r2.stderr), said(r2));
});

for (const [what, args, input] of [
    ['an AWS key id in the prompt', ['-p', 'deploy with AKIAIOSFODNN7EXAMPLE please'], undefined],
    ['a PEM private key piped on stdin', ['-p'], `use this key:\n${PEM}\n`],
]) {
    await s.test(`claude -p: blocked: ${what}`, async () => {
        const before = (await mockStats(mock)).requests;
        const posts = relay.seen.length;
        const r = await claude(args, { input });
        const out = r.stdout + r.stderr;
        const after = (await mockStats(mock)).requests;
        s.check(`${what}: claude reports the gateway's 403 naming the rule and exits non-zero`, r.code !== 0 &&
            /403/.test(out) && /no-secrets/.test(out) && !out.includes('AKIAIOSFODNN7EXAMPLE') && !out.includes('MIIEow'), said(r));
        s.check(`${what}: it asked (POST /v1/messages) and nothing reached the provider`, after === before &&
            relay.seen.slice(posts).some((q) => q.method === 'POST'), { before, after });
        const audit = auditRecords(gw.audit);
        const req = audit.filter((a) => a.type === 'request').at(-1);
        s.check(`${what}: audited as blocked by no-secrets`, req && req.meta.verdict === 'block' && req.meta.rule === 'no-secrets',
            req && req.meta);
    });
}

await s.test('/metrics: the blocked ones', async () => {
    const m = await metrics(gwBase);
    const n = countRequests(m, (l) => l.endpoint === '/v1/messages' && l.status === '403');
    s.check('/metrics counts the blocked requests under endpoint="/v1/messages", status 403', n >= 2, m);
});

// claude (Bun) sends HEAD / to the base URL as a probe; an answer to HEAD carries no body
// (RFC 9110 9.3.2), or the bytes are read as the next response on that connection. Checked
// over all the runs above, so that a probe a quick run did not get to send cannot matter.
const heads = relay.seen.filter((q) => q.method === 'HEAD');
s.check('its HEAD / probes are answered without a body (the relay read no stray bytes)', heads.length >= 1 &&
    heads.every((q) => !q.error), heads.map((q) => `${q.method} ${q.url}: ${q.error || 'clean'}`));

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
