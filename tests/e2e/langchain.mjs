// langchain.mjs -- LangChain.js (@langchain/openai 0.6, @langchain/anthropic 0.3 on
// @langchain/core 0.3) pointed at airlock: ChatOpenAI and OpenAIEmbeddings with
// configuration.baseURL, ChatAnthropic with anthropicApiUrl. A relay between the library and
// the gateway writes down which paths it used. Prints ok/FAIL lines and the closing
// `N passed, N failed`.
import { ChatAnthropic } from '@langchain/anthropic';
import { ChatOpenAI, OpenAIEmbeddings } from '@langchain/openai';
import fs from 'node:fs';
import path from 'node:path';
import {
    CLIENT, DEFAULT, PLACEHOLDER, Suite, gatewayConfig, here, mockRecords, sanitizerReport, startAirlock, startMock, startRelay,
    stopAirlock, words,
} from './lib.mjs';

const s = new Suite('langchain');
s.requireBuilt();
const version = (p) => JSON.parse(fs.readFileSync(path.join(here, 'node_modules', p, 'package.json'))).version;
console.log(`@langchain/core ${version('@langchain/core')}, @langchain/openai ${version('@langchain/openai')}, ` +
    `@langchain/anthropic ${version('@langchain/anthropic')}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({ port, mockPort: mock.port }));
if (!gw) s.finish('FAIL langchain: the gateway did not start', true);
const relay = await startRelay(gw.port);
const base = `http://127.0.0.1:${relay.port}`;
const EMAIL = 'jane.doe@example.com';
const lastPath = () => relay.seen.filter((q) => q.method === 'POST').at(-1)?.url;
const lastSent = () => mockRecords(mock).at(-1);
const textOf = (m) => (typeof m.content === 'string' ? m.content
    : (m.content || []).map((c) => (typeof c === 'string' ? c : c.text || '')).join(''));

const chat = new ChatOpenAI({ model: 'gpt-4o-mini', apiKey: CLIENT, configuration: { baseURL: `${base}/v1` }, maxRetries: 0 });

await s.test('ChatOpenAI', async () => {
    const m = await chat.invoke([['system', 'be brief'], ['human', 'hello']]);
    s.check('ChatOpenAI.invoke: POST /v1/chat/completions, the answer and usage', lastPath() === '/v1/chat/completions' &&
        textOf(m) === DEFAULT && m.usage_metadata?.output_tokens === 8, { path: lastPath(), m });
    let text = '';
    for await (const chunk of await chat.stream(`write to ${EMAIL} MOCK:user_split`)) text += textOf(chunk);
    const sent = lastSent();
    s.check('ChatOpenAI.stream: the email restored, a placeholder at the mock', text === `write to ${EMAIL} MOCK:user_split` &&
        sent && !sent.text.includes(EMAIL) && PLACEHOLDER.test(sent.text), text);
});

await s.test('ChatOpenAI useResponsesApi', async () => {
    const rs = new ChatOpenAI({
        model: 'gpt-4o-mini', apiKey: CLIENT, configuration: { baseURL: `${base}/v1` }, maxRetries: 0, useResponsesApi: true,
    });
    const m = await rs.invoke(`mail ${EMAIL} MOCK:split=Sent to %PH% now.`);
    s.check('ChatOpenAI with useResponsesApi: POST /v1/responses, the email restored', lastPath() === '/v1/responses' &&
        textOf(m) === `Sent to ${EMAIL} now.`, { path: lastPath(), m });
});

await s.test('OpenAIEmbeddings', async () => {
    const emb = new OpenAIEmbeddings({ model: 'gpt-4o-mini', apiKey: CLIENT, configuration: { baseURL: `${base}/v1` }, maxRetries: 0 });
    const q = await emb.embedQuery('abc');
    s.check('OpenAIEmbeddings.embedQuery: POST /v1/embeddings, the mock\'s vector for the text', lastPath() === '/v1/embeddings' &&
        q.length === 4 && q[0] === 3 && q[1] === 97 + 98 + 99, q);
    const docs = await emb.embedDocuments(['first document', `mail ${EMAIL}`]);
    s.check('OpenAIEmbeddings.embedDocuments: a vector each, the email embedded redacted', docs.length === 2 &&
        docs[0][0] === 'first document'.length && docs[1][0] === 'mail '.length + 16, docs);
});

await s.test('ChatAnthropic', async () => {
    const claude = new ChatAnthropic({ model: 'claude-3-5-haiku', apiKey: CLIENT, anthropicApiUrl: base, maxRetries: 0, maxTokens: 100 });
    const m = await claude.invoke('MOCK:words=3');
    s.check('ChatAnthropic.invoke: POST /v1/messages, the answer and usage', lastPath() === '/v1/messages' &&
        textOf(m) === words(3) && m.usage_metadata?.output_tokens === 3, { path: lastPath(), m });
    let text = '';
    for await (const chunk of await claude.stream(`mail ${EMAIL} MOCK:split=Sent to %PH% now.`)) text += textOf(chunk);
    s.check('ChatAnthropic.stream: the email restored', text === `Sent to ${EMAIL} now.`, text);
    let err = null;
    try {
        await claude.invoke('deploy with AKIAIOSFODNN7EXAMPLE');
    } catch (e) {
        err = e;
    }
    s.check('ChatAnthropic: a secret is an error with status 403 naming the rule', err && err.status === 403 &&
        /no-secrets/.test(err.message), String(err));
});

await s.test('ChatOpenAI: a secret', async () => {
    let err = null;
    try {
        await chat.invoke('deploy with AKIAIOSFODNN7EXAMPLE');
    } catch (e) {
        err = e;
    }
    s.check('ChatOpenAI: a secret is an error with status 403 naming the rule', err && err.status === 403 &&
        /no-secrets/.test(err.message), String(err));
});

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
