// egress_clients.mjs -- real clients that are NOT re-pointed at airlock: they keep their
// default base URLs (https://api.anthropic.com, https://api.openai.com/v1) and only get
// HTTPS_PROXY (or a proxy dispatcher) at airlock's forward listener and the org CA from
// `airlock ca init` (issue 15). airlock intercepts api.anthropic.com and api.openai.com and
// maps them to providers whose base_url is the C mock, so an answer can only come back
// through interception; every other host is refused (default: deny). Offline throughout:
// the clients never resolve or reach the real hosts. Covers Claude Code (HTTPS_PROXY +
// NODE_EXTRA_CA_CERTS), the official openai and @anthropic-ai/sdk packages (undici's
// ProxyAgent trusting the CA) and the Codex CLI (HTTPS_PROXY + SSL_CERT_FILE = `airlock ca
// bundle`). Prints ok/FAIL lines and the closing `N passed, N failed`.
import Anthropic from '@anthropic-ai/sdk';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { ProxyAgent, fetch as undiciFetch } from 'undici';
import {
    AIRLOCK, ANTHROPIC_REAL, CLIENT, DEFAULT, OPENAI_REAL, PLACEHOLDER, Suite, auditRecords, countRequests, freePort, here, metrics,
    mockRecords, mockStats, run, sanitizerReport, startAirlock, startMock, stopAirlock, words,
} from './lib.mjs';

const s = new Suite('egress_clients');
s.requireBuilt();
const CLAUDE = path.join(here, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe');
const CODEX = path.join(here, 'node_modules', '@openai', 'codex', 'bin', 'codex.js');
const SONNET = 'claude-sonnet-4-5';
const HAIKU = 'claude-haiku-4-5';
const EMAIL = 'jane.doe@example.com';

// the org CA, as an administrator makes it, and the bundle for clients that replace their
// trust store rather than extend it
const caPrefix = path.join(s.tmp, 'org-ca');
{
    const r = spawnSync(AIRLOCK, ['ca', 'init', '--out', caPrefix], { encoding: 'utf8' });
    if (r.status !== 0) s.finish(`FAIL egress_clients: airlock ca init: exit ${r.status}: ${r.stderr}`, true);
    const b = spawnSync(AIRLOCK, ['ca', 'bundle', '--ca', `${caPrefix}.crt`], { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (b.status !== 0) s.finish(`FAIL egress_clients: airlock ca bundle: exit ${b.status}: ${b.stderr}`, true);
    fs.writeFileSync(path.join(s.tmp, 'ca-bundle.pem'), b.stdout);
}
const CA = `${caPrefix}.crt`;
const BUNDLE = path.join(s.tmp, 'ca-bundle.pem');

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
let fwPort = 0;
const gw = await startAirlock(s, 'gateway', async (port) => (fwPort = await freePort()) && `listen:
  - {address: "127.0.0.1:${port}"}
  - {address: "127.0.0.1:${fwPort}", mode: forward}
keys:
  - {name: alice, team: red, key: "${CLIENT}"}
providers:
  oai: {type: openai, base_url: "http://127.0.0.1:${mock.port}/v1", api_key: "${OPENAI_REAL}"}
  ant: {type: anthropic, base_url: "http://127.0.0.1:${mock.port}", api_key: "${ANTHROPIC_REAL}"}
models:
  - {name: gpt-4o-mini, provider: oai}
  - {name: ${SONNET}, provider: ant}
  - {name: ${HAIKU}, provider: ant}
rules:
  - {name: no-secrets, if: {detected: [secrets]}, then: {action: block}}
  - {name: mask-emails, if: {detected: [email]}, then: {action: redact, detectors: [email]}}
  - {name: default, then: {action: allow}}
egress:
  ca: {cert: "${CA}", key: "${caPrefix}.key"}
  intercept:
    - {host: api.openai.com, provider: oai}
    - {host: api.anthropic.com, provider: ant}
  default: deny
audit: {dir: ./audit}
limits: {upstream_timeout_ms: 3000}
`);
if (!gw) s.finish('FAIL egress_clients: the gateway with a forward listener did not start', true);
const PROXY = `http://127.0.0.1:${fwPort}`;
const home = path.join(s.tmp, 'home');
const work = path.join(s.tmp, 'project');
fs.mkdirSync(home);
fs.mkdirSync(work);
const said = (r) => `exit ${r.code}${r.signal ? ' ' + r.signal : ''}; stdout: ${r.stdout.slice(0, 600)}; stderr: ${r.stderr.slice(-900)}`;
const newRecords = (n) => mockRecords(mock).slice(n);
// connect records written since `from` (an index into the audit's records)
const connects = (from) => auditRecords(gw.audit).slice(from).filter((a) => a.type === 'connect').map((a) => a.meta);
const auditLen = () => auditRecords(gw.audit).length;

// ---- Claude Code: HTTPS_PROXY and NODE_EXTRA_CA_CERTS only, no ANTHROPIC_BASE_URL
const claudeEnv = {
    PATH: process.env.PATH, HOME: home, CLAUDE_CONFIG_DIR: path.join(home, '.claude'), LANG: 'C.UTF-8', TERM: 'dumb', NO_COLOR: '1',
    HTTPS_PROXY: PROXY, NODE_EXTRA_CA_CERTS: CA,
    ANTHROPIC_API_KEY: CLIENT,
    ANTHROPIC_MODEL: SONNET, ANTHROPIC_DEFAULT_SONNET_MODEL: SONNET, ANTHROPIC_DEFAULT_OPUS_MODEL: SONNET,
    ANTHROPIC_DEFAULT_HAIKU_MODEL: HAIKU, ANTHROPIC_SMALL_FAST_MODEL: HAIKU,
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', DISABLE_TELEMETRY: '1', DISABLE_AUTOUPDATER: '1', DISABLE_ERROR_REPORTING: '1',
    DISABLE_GROWTHBOOK: '1', DISABLE_INSTALLATION_CHECKS: '1', DISABLE_BUG_COMMAND: '1', DISABLE_COST_WARNINGS: '1',
    CLAUDE_CODE_DISABLE_TERMINAL_TITLE: '1',
};
const claude = (args, opts = {}) => run(s, CLAUDE, args, { env: claudeEnv, cwd: work, timeoutMs: 90000, ...opts });

if (fs.existsSync(CLAUDE)) {
    s.label = 'claude_code via proxy';
    await s.test('claude via the egress proxy', async () => {
        const n0 = mockRecords(mock).length, a0 = auditLen();
        const r = await claude(['-p', 'say hello']);
        s.check('claude -p with only HTTPS_PROXY + NODE_EXTRA_CA_CERTS prints the mock\'s answer', r.code === 0 &&
            r.stdout.trim() === DEFAULT, said(r));
        const recs = newRecords(n0);
        s.check('the request reached the mock through interception, with the provider key', recs.length >= 1 &&
            recs.every((x) => x.line.startsWith('POST /v1/messages ') && x.head.includes(`x-api-key: ${ANTHROPIC_REAL}\r\n`) &&
                !x.head.includes(CLIENT)), recs.map((x) => x.head));
        const c = connects(a0);
        s.check('audited: CONNECT api.anthropic.com:443 intercepted, and nothing tunnelled', c.some((m) =>
            m.host === 'api.anthropic.com' && m.port === 443 && m.decision === 'intercept') &&
            c.every((m) => m.decision !== 'tunnel'), c);
        const reqs = auditRecords(gw.audit).slice(a0).filter((a) => a.type === 'request');
        s.check('audited: its request as on the gateway (key alice, /v1/messages)', reqs.length >= 1 &&
            reqs.every((q) => q.meta.key === 'alice' && q.meta.endpoint === '/v1/messages' && q.meta.model === SONNET), reqs.map((q) => q.meta));
    });
    await s.test('claude via the egress proxy: redaction', async () => {
        const n0 = mockRecords(mock).length;
        const r = await claude(['-p', `write to ${EMAIL} MOCK:user_split`]);
        const recs = newRecords(n0);
        s.check('the email left as a placeholder and is printed restored', r.code === 0 && recs.length === 1 &&
            !recs[0].text.includes(EMAIL) && PLACEHOLDER.test(recs[0].text) &&
            r.stdout.includes(`write to ${EMAIL} MOCK:user_split`) && !PLACEHOLDER.test(r.stdout), said(r));
    });
    await s.test('claude via the egress proxy: a secret', async () => {
        const before = (await mockStats(mock)).requests;
        const r = await claude(['-p', 'deploy with AKIAIOSFODNN7EXAMPLE please']);
        const after = (await mockStats(mock)).requests;
        s.check('an AWS key id is refused (403 naming the rule), nothing reaches the provider', r.code !== 0 &&
            /403/.test(r.stdout + r.stderr) && /no-secrets/.test(r.stdout + r.stderr) && after === before, said(r));
    });
} else {
    s.label = 'claude_code via proxy';
    s.check('@anthropic-ai/claude-code installed (run_egress_clients.sh installs it)', false, CLAUDE);
}

// ---- the official SDKs with their default base URLs, through undici's ProxyAgent
{
    const ca = fs.readFileSync(CA, 'utf8');
    const dispatcher = new ProxyAgent({ uri: PROXY, requestTls: { ca } });
    const fetchOptions = { dispatcher };
    const openai = new OpenAI({ apiKey: CLIENT, fetch: undiciFetch, fetchOptions, maxRetries: 0, timeout: 20000 });
    const anthropic = new Anthropic({
        apiKey: CLIENT, fetch: undiciFetch, fetchOptions: { dispatcher: new ProxyAgent({ uri: PROXY, requestTls: { ca } }) },
        maxRetries: 0, timeout: 20000,
    });
    s.label = 'sdk via proxy';
    s.check('the clients keep their default base URLs', openai.baseURL === 'https://api.openai.com/v1' &&
        anthropic.baseURL === 'https://api.anthropic.com', [openai.baseURL, anthropic.baseURL]);

    await s.test('openai via the egress proxy', async () => {
        const n0 = mockRecords(mock).length, a0 = auditLen();
        const r = await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
        const recs = newRecords(n0);
        s.check('openai: chat.completions.create at https://api.openai.com answered by the mock', r.choices[0].message.content === DEFAULT &&
            recs.length === 1 && recs[0].line.startsWith('POST /v1/chat/completions ') &&
            recs[0].head.includes(`authorization: Bearer ${OPENAI_REAL}\r\n`), { r, recs: recs.map((x) => x.head) });
        const stream = await openai.responses.create({ model: 'gpt-4o-mini', stream: true, input: `mail ${EMAIL} MOCK:split=Sent to %PH% now.` });
        let text = '';
        for await (const ev of stream) if (ev.type === 'response.output_text.delta') text += ev.delta;
        const sent = newRecords(n0).at(-1);
        s.check('openai: responses stream through interception: the email redacted upstream, restored here',
            text === `Sent to ${EMAIL} now.` && sent && !sent.text.includes(EMAIL) && PLACEHOLDER.test(sent.text), { text });
        const e = await openai.embeddings.create({ model: 'gpt-4o-mini', input: 'abc', encoding_format: 'float' });
        s.check('openai: embeddings through interception', e.data[0].embedding[0] === 3, e);
        // a connect record is written when its connection ends: close the agent's pool
        await dispatcher.close();
        let c = [];
        for (let i = 0; i < 40; i++) {
            c = connects(a0).filter((m) => m.host === 'api.openai.com');
            if (c.length) break;
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
        s.check('openai: audited as an intercepted CONNECT to api.openai.com:443 carrying the requests', c.length >= 1 &&
            c.every((m) => m.port === 443 && m.decision === 'intercept' && m.status === 200 && m.bytes_up > 0 && m.bytes_down > 0), c);
    });

    await s.test('anthropic via the egress proxy', async () => {
        const n0 = mockRecords(mock).length;
        const m = await anthropic.messages.create({ model: SONNET, max_tokens: 50, messages: [{ role: 'user', content: 'MOCK:words=3' }] });
        const recs = newRecords(n0);
        s.check('anthropic: messages.create at https://api.anthropic.com answered by the mock', m.content[0].text === words(3) &&
            recs.length === 1 && recs[0].head.includes(`x-api-key: ${ANTHROPIC_REAL}\r\n`), m);
        const t = await anthropic.messages.countTokens({ model: SONNET, messages: [{ role: 'user', content: 'count me' }] });
        s.check('anthropic: messages.countTokens through interception', typeof t.input_tokens === 'number' && t.input_tokens > 0, t);
    });

    await s.test('the org CA is what makes it work', async () => {
        const bare = new OpenAI({ apiKey: CLIENT, fetch: undiciFetch, fetchOptions: { dispatcher: new ProxyAgent({ uri: PROXY }) }, maxRetries: 0 });
        let err = null;
        try {
            await bare.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
        } catch (e) {
            err = e;
        }
        s.check('openai: without the org CA the intercepted TLS is not trusted (APIConnectionError)',
            err instanceof OpenAI.APIConnectionError, String(err));
    });
}

// ---- the Codex CLI: HTTPS_PROXY and SSL_CERT_FILE (the bundle); its built-in OpenAI provider
if (fs.existsSync(CODEX)) {
    s.label = 'codex via proxy';
    const codexHome = path.join(s.tmp, 'codex-home');
    fs.mkdirSync(codexHome);
    // no model_provider and no base_url: the built-in "openai" provider, https://api.openai.com/v1
    // model_auto_compact_token_limit: low, so that a resumed session compacts first (below)
    fs.writeFileSync(path.join(codexHome, 'config.toml'), `model = "gpt-4o-mini"
model_auto_compact_token_limit = 3000
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false
`);
    const env = {
        PATH: process.env.PATH, HOME: home, CODEX_HOME: codexHome, LANG: 'C.UTF-8', TERM: 'dumb', NO_COLOR: '1',
        HTTPS_PROXY: PROXY, SSL_CERT_FILE: BUNDLE, CODEX_API_KEY: CLIENT,
    };
    const codex = async (prompt, extra = [], persist = false) => {
        const last = path.join(s.tmp, `codex-last-${Date.now()}.txt`);
        const r = await run(s, process.execPath, [CODEX, 'exec', '--skip-git-repo-check', ...(persist ? [] : ['--ephemeral']),
            '--strict-config', '--color', 'never', '-o', last, ...extra, prompt], { env, cwd: work, timeoutMs: 120000 });
        r.last = fs.existsSync(last) ? fs.readFileSync(last, 'utf8') : null;
        return r;
    };
    await s.test('codex via the egress proxy', async () => {
        const n0 = mockRecords(mock).length, a0 = auditLen();
        const r = await codex('say hello');
        s.check('codex exec with only HTTPS_PROXY + SSL_CERT_FILE (airlock ca bundle) prints the mock\'s answer',
            r.code === 0 && r.last?.trim() === DEFAULT, `${said(r)}; last: ${r.last}`);
        const recs = newRecords(n0);
        s.check('its Responses request reached the mock through interception, with the provider key', recs.length >= 1 &&
            recs.some((x) => x.line.startsWith('POST /v1/responses ') && x.head.includes(`authorization: Bearer ${OPENAI_REAL}\r\n`)) &&
            recs.every((x) => !x.head.includes(CLIENT)), recs.map((x) => x.line));
        const c = connects(a0);
        const llm = (m) => m.host === 'api.openai.com' || m.host === 'api.anthropic.com';
        s.check('audited: api.openai.com intercepted; its other hosts (chatgpt.com, ...) refused, none tunnelled', c.some((m) =>
            m.host === 'api.openai.com' && m.decision === 'intercept') && c.every((m) => m.decision !== 'tunnel') &&
            c.filter((m) => !llm(m)).every((m) => m.decision === 'refuse' && m.status === 403),
        c.map((m) => `${m.host}:${m.port} ${m.decision} ${m.status}`));
    });
    await s.test('codex via the egress proxy: its WebSocket attempt', async () => {
        // the built-in provider tries the Responses API over a WebSocket first; airlock answers
        // the upgrade with 426 and codex falls back to HTTP (the answer above came that way)
        const m = await metrics(`http://127.0.0.1:${gw.port}`);
        s.check('its WebSocket upgrade was answered 426 (and it fell back to POST /v1/responses)',
            countRequests(m, (l) => l.status === '426') >= 1 &&
            countRequests(m, (l) => l.endpoint === '/v1/responses' && l.status === '200') >= 1, m);
    });
    await s.test('codex via the egress proxy: remote compaction', async () => {
        // with the OpenAI provider a resumed session over the limit compacts remotely: a
        // /v1/responses request ending in a compaction_trigger item, answered with one opaque
        // compaction item, which the next request carries back as input
        const n0 = mockRecords(mock).length;
        const r1 = await codex(`remember ${EMAIL} MOCK:words=2`, [], true);
        const r2 = await codex('MOCK:words=3', ['resume', '--last'], true);
        const recs = newRecords(n0).filter((x) => x.line.startsWith('POST /v1/responses '));
        const lastItem = (x) => (Array.isArray(x.body?.input) ? x.body.input.at(-1) : null);
        const trig = recs.findIndex((x) => lastItem(x)?.type === 'compaction_trigger');
        const after = trig >= 0 ? recs.slice(trig + 1) : [];
        s.check('codex compacted through interception (a compaction_trigger request) and answered the next turn',
            r1.code === 0 && r2.code === 0 && trig >= 1 && r2.last?.trim() === words(3),
        `${said(r2)}; last items: ${JSON.stringify(recs.map((x) => lastItem(x)?.type || lastItem(x)?.role))}`);
        s.check('the compaction item came back as input on the next request, opaque, passed through', after.some((x) =>
            x.body.input.some((i) => i.type === 'compaction' && typeof i.encrypted_content === 'string' && i.encrypted_content.length > 0)),
        after.map((x) => x.body?.input?.map((i) => i.type)));
        s.check('the address is a placeholder in every request that carried it, the compaction included',
            recs.every((x) => !x.text.includes(EMAIL)) && trig >= 0 && PLACEHOLDER.test(recs[trig].text), recs.length);
    });
    await s.test('codex via the egress proxy: redaction', async () => {
        const n0 = mockRecords(mock).length;
        const r = await codex(`write to ${EMAIL} MOCK:split=Sent to %PH% now.`);
        const recs = newRecords(n0).filter((x) => x.line.startsWith('POST /v1/responses '));
        s.check('the email left as a placeholder and is printed restored', r.code === 0 && recs.length >= 1 &&
            recs.every((x) => !x.text.includes(EMAIL)) && r.last?.trim() === `Sent to ${EMAIL} now.`, `${said(r)}; last: ${r.last}`);
    });
} else {
    s.label = 'codex via proxy';
    s.check('@openai/codex installed (run_egress_clients.sh installs it)', false, CODEX);
}

s.label = 'egress_clients';
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
