// vercel_ai.mjs -- the Vercel AI SDK (npm `ai` 5.x with @ai-sdk/openai 2.x and
// @ai-sdk/anthropic 2.x) pointed at airlock with createOpenAI / createAnthropic({ baseURL }).
// Since v5, openai(model) speaks the Responses API; openai.chat(model) Chat Completions,
// openai.completion(model) Completions, openai.textEmbeddingModel(model) Embeddings. A relay
// between the SDK and the gateway writes down which paths it used. Prints ok/FAIL lines
// and the closing `N passed, N failed`.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, embed, embedMany, generateText, streamText } from 'ai';
import fs from 'node:fs';
import path from 'node:path';
import {
    DEFAULT, CLIENT, PLACEHOLDER, Suite, gatewayConfig, here, mockRecords, sanitizerReport, startAirlock, startMock, startRelay,
    stopAirlock, words,
} from './lib.mjs';

globalThis.AI_SDK_LOG_WARNINGS = false; // 'unknown model' notes for the mock's names
const s = new Suite('vercel_ai');
s.requireBuilt();
const version = (p) => JSON.parse(fs.readFileSync(path.join(here, 'node_modules', p, 'package.json'))).version;
console.log(`ai ${version('ai')}, @ai-sdk/openai ${version('@ai-sdk/openai')}, @ai-sdk/anthropic ${version('@ai-sdk/anthropic')}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({ port, mockPort: mock.port }));
if (!gw) s.finish('FAIL vercel_ai: the gateway did not start', true);
const relay = await startRelay(gw.port);
const base = `http://127.0.0.1:${relay.port}`;
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: CLIENT });
// @ai-sdk/anthropic's base URL includes /v1 (its default is https://api.anthropic.com/v1)
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey: CLIENT });
const EMAIL = 'jane.doe@example.com';
const lastPath = () => relay.seen.filter((q) => q.method === 'POST').at(-1)?.url;
const lastSent = () => mockRecords(mock).at(-1);

await s.test('openai(model): Responses', async () => {
    const r = await generateText({ model: openai('gpt-4o-mini'), prompt: 'MOCK:words=5', maxRetries: 0 });
    s.check('generateText with openai(model) asks POST /v1/responses and gets the answer', lastPath() === '/v1/responses' &&
        r.text === words(5) && r.usage.outputTokens === 5 && r.usage.inputTokens > 0, { path: lastPath(), text: r.text, usage: r.usage });

    const st = streamText({ model: openai('gpt-4o-mini'), prompt: `mail ${EMAIL} MOCK:split=Sent to %PH% now.`, maxRetries: 0 });
    let text = '';
    for await (const t of st.textStream) text += t;
    const sent = lastSent();
    s.check('streamText over Responses: the email restored across one-character deltas', text === `Sent to ${EMAIL} now.` &&
        (await st.text) === text, text);
    s.check('streamText over Responses: the mock saw a placeholder', sent && sent.line.startsWith('POST /v1/responses ') &&
        !sent.text.includes(EMAIL) && PLACEHOLDER.test(sent.text), sent && sent.text.slice(0, 300));
});

await s.test('openai.chat(model): Chat Completions', async () => {
    const r = await generateText({
        model: openai.chat('gpt-4o-mini'), system: 'be brief', messages: [{ role: 'user', content: 'hello' }], maxRetries: 0,
    });
    s.check('generateText with openai.chat(model) asks POST /v1/chat/completions', lastPath() === '/v1/chat/completions' &&
        r.text === DEFAULT && r.usage.outputTokens === 8, { path: lastPath(), text: r.text, usage: r.usage });
    const st = streamText({ model: openai.chat('gpt-4o-mini'), prompt: `to ${EMAIL} MOCK:user_split`, maxRetries: 0 });
    let text = '';
    for await (const t of st.textStream) text += t;
    s.check('streamText over Chat Completions: the email restored', text === `to ${EMAIL} MOCK:user_split`, text);
});

await s.test('openai.completion(model): Completions', async () => {
    const r = await generateText({ model: openai.completion('gpt-4o-mini'), prompt: 'MOCK:words=4', maxRetries: 0 });
    s.check('generateText with openai.completion(model) asks POST /v1/completions', lastPath() === '/v1/completions' &&
        r.text === words(4), { path: lastPath(), text: r.text });
});

await s.test('openai embeddings', async () => {
    const e = await embed({ model: openai.textEmbeddingModel('gpt-4o-mini'), value: 'abc', maxRetries: 0 });
    s.check('embed asks POST /v1/embeddings; the vector is the mock\'s for that text', lastPath() === '/v1/embeddings' &&
        e.embedding.length === 4 && e.embedding[0] === 3 && e.embedding[1] === 97 + 98 + 99, e.embedding);
    const many = await embedMany({ model: openai.textEmbeddingModel('gpt-4o-mini'), values: ['a', `mail ${EMAIL}`], maxRetries: 0 });
    s.check('embedMany: a vector each; the email embedded redacted (a 16-character placeholder)', many.embeddings.length === 2 &&
        many.embeddings[0][0] === 1 && many.embeddings[1][0] === 'mail '.length + 16, many.embeddings);
});

await s.test('anthropic(model): Messages', async () => {
    const r = await generateText({ model: anthropic('claude-3-5-haiku'), prompt: 'MOCK:words=3', maxRetries: 0 });
    s.check('generateText with anthropic(model) asks POST /v1/messages', lastPath() === '/v1/messages' && r.text === words(3) &&
        r.usage.outputTokens === 3, { path: lastPath(), text: r.text, usage: r.usage });
    const st = streamText({ model: anthropic('claude-3-5-haiku'), prompt: `mail ${EMAIL} MOCK:split=Sent to %PH% now.`, maxRetries: 0 });
    let text = '';
    for await (const t of st.textStream) text += t;
    s.check('streamText over Messages: the email restored', text === `Sent to ${EMAIL} now.`, text);
});

for (const [what, model] of [['openai(model)', () => openai('gpt-4o-mini')], ['anthropic(model)', () => anthropic('claude-3-5-haiku')]]) {
    await s.test(`${what}: a secret`, async () => {
        let err = null;
        try {
            await generateText({ model: model(), prompt: 'deploy with AKIAIOSFODNN7EXAMPLE', maxRetries: 0 });
        } catch (e) {
            err = e;
        }
        s.check(`${what}: a secret is an APICallError with status 403 naming the rule`, APICallError.isInstance(err) &&
            err.statusCode === 403 && /no-secrets/.test(err.message + (err.responseBody || '')), String(err));
    });
}

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
