// sdk_tests.mjs -- the official OpenAI and Anthropic SDKs, unmodified, against one running
// airlock. Usage: node sdk_tests.mjs BASE_URL CLIENT_KEY LABEL
// (BASE_URL like http://127.0.0.1:PORT; https with NODE_EXTRA_CA_CERTS for the TLS run).
// Prints ok/FAIL lines and a closing `N passed, N failed`.
import Anthropic from '@anthropic-ai/sdk';
import AnthropicV0 from 'anthropic-sdk-v0';
import OpenAI from 'openai';

const [base, key, label = 'plain', mockPort] = process.argv.slice(2);
const DEFAULT = 'Hello from the mock provider, a deterministic answer.';
const PRIVATE_KEY = '-----BEGIN RSA PRIVATE KEY-----\n' +
    'MIIEowIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Z1kJKZ4fl1rBfX7rHnLDEyqE\n' +
    'k2Fq8Jw4v8vJm2JcQxY7wq9H3tH6fXJ8Q0cTgZ3mQ9bYyL9a0v2VfTHsm6R1pXq\n' +
    '-----END RSA PRIVATE KEY-----';
const words = (n) => Array.from({ length: n }, (_, i) => `word${i + 1}`).join(' ');

let passed = 0, failed = 0;
function check(name, cond, detail) {
    if (cond) {
        passed++;
        console.log(`ok   [${label}] ${name}`);
    } else {
        failed++;
        console.log(`FAIL [${label}] ${name}${detail !== undefined ? ': ' + String(JSON.stringify(detail)).slice(0, 500) : ''}`);
    }
}
async function test(name, fn) {
    try {
        await fn();
    } catch (e) {
        check(name, false, `threw ${e && e.constructor && e.constructor.name}: ${e && e.message}`);
    }
}
async function expectError(name, fn, cls, pred) {
    try {
        await fn();
        check(name, false, 'no error thrown');
    } catch (e) {
        check(name, e instanceof cls && (!pred || pred(e)),
            `${e && e.constructor && e.constructor.name} status=${e && e.status}: ${e && e.message}`);
    }
}

const openai = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0, timeout: 20000 });
const anthropic = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0, timeout: 20000 });

await test('openai: chat.completions.create', async () => {
    const { data: r, response } = await openai.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] })
        .withResponse();
    check('openai: chat.completions.create text', r.choices[0].message.content === DEFAULT, r);
    check('openai: model and usage', r.model === 'gpt-4o-mini' && r.usage.completion_tokens === 8 &&
        r.usage.prompt_tokens > 0 && r.usage.total_tokens === r.usage.prompt_tokens + 8, r.usage);
    check('openai: x-airlock-* headers visible to the SDK', !!response.headers.get('x-airlock-request-id') &&
        response.headers.get('x-airlock-route') === 'oai/gpt-4o-mini' &&
        response.headers.get('x-airlock-rule') === 'default', [...response.headers]);
});

await test('openai: stream', async () => {
    const stream = await openai.chat.completions.create({
        model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'MOCK:words=9' }],
    });
    let text = '', usage = null, finish = null, n = 0;
    for await (const chunk of stream) {
        n++;
        for (const c of chunk.choices) {
            text += c.delta?.content ?? '';
            finish = c.finish_reason ?? finish;
        }
        if (chunk.usage) usage = chunk.usage;
    }
    check('openai: stream text via for await', text === words(9), text);
    check('openai: stream chunks, finish_reason and usage', n >= 10 && finish === 'stop' &&
        usage && usage.completion_tokens === 9, { n, finish, usage });
});

await test('openai: chat.completions.stream helper', async () => {
    const runner = openai.chat.completions.stream({
        model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'MOCK:words=5' }],
    });
    let deltas = '';
    runner.on('content', (d) => { deltas += d; });
    const final = await runner.finalChatCompletion();
    check('openai: stream helper finalChatCompletion', final.choices[0].message.content === words(5) &&
        deltas === words(5), final);
});

await test('openai: anthropic model through the OpenAI SDK', async () => {
    const r = await openai.chat.completions.create({
        model: 'claude-3-5-haiku', max_tokens: 50, messages: [{ role: 'user', content: 'MOCK:words=3' }],
    });
    check('openai SDK -> anthropic provider: OpenAI-shaped answer naming the real model',
        r.choices[0].message.content === words(3) && r.model === 'claude-3-5-haiku-20241022', r);
});

await test('openai: redaction round trip', async () => {
    const stream = await openai.chat.completions.create({
        model: 'gpt-4o-mini', stream: true,
        messages: [{ role: 'user', content: 'write to jane.doe@example.com MOCK:user_split' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    check('openai: redacted email restored in the stream', text.includes('jane.doe@example.com') &&
        !text.includes('[EMAIL_'), text);
});

await test('openai: models.list', async () => {
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    check('openai: models.list', ids.includes('gpt-4o-mini') && ids.includes('claude-3-5-haiku'), ids);
});

await test('openai: completions.create', async () => {
    const r = await openai.completions.create({ model: 'gpt-4o-mini', prompt: 'Say this is a test MOCK:words=6', max_tokens: 20 });
    check('openai: completions.create text, object and usage', r.object === 'text_completion' &&
        r.choices.length === 1 && r.choices[0].text === words(6) && r.choices[0].finish_reason === 'stop' &&
        r.usage.completion_tokens === 6 && r.usage.prompt_tokens > 0 && r.model === 'gpt-4o-mini', r);
    const two = await openai.completions.create({ model: 'gpt-4o-mini', prompt: ['first MOCK:words=2', 'second'] });
    check('openai: completions.create with an array of prompts: a choice each', two.choices.length === 2 &&
        two.choices.map((c) => c.index).sort().join() === '0,1' && two.choices.every((c) => c.text === words(2)), two);
});

await test('openai: completions.create stream', async () => {
    const stream = await openai.completions.create({
        model: 'gpt-4o-mini', prompt: 'MOCK:words=8', stream: true, stream_options: { include_usage: true },
    });
    let text = '', n = 0, usage = null, finish = null;
    for await (const chunk of stream) {
        n++;
        for (const c of chunk.choices) {
            text += c.text;
            finish = c.finish_reason ?? finish;
        }
        if (chunk.usage) usage = chunk.usage;
    }
    check('openai: completions stream text, finish_reason and usage', text === words(8) && n >= 8 &&
        finish === 'stop' && usage && usage.completion_tokens === 8, { text, n, finish, usage });
});

await test('openai: completions redaction round trip', async () => {
    const stream = await openai.completions.create({
        model: 'gpt-4o-mini', prompt: 'mail jane.doe@example.com MOCK:split=Sent to %PH% today.', stream: true,
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    check('openai: completions stream: the placeholder split over one-character chunks comes back restored',
        text === 'Sent to jane.doe@example.com today.', text);
});

// the mock's vector for a text: [length, sum of its bytes, first byte, last byte]
const vec = (t) => {
    const b = Buffer.from(t);
    return [b.length, b.reduce((a, x) => a + x, 0), b[0], b[b.length - 1]];
};
const sameVec = (e, t) => e.length === 4 && vec(t).every((v, i) => Math.abs(e[i] - v) < 1e-3);
await test('openai: embeddings.create', async () => {
    const r = await openai.embeddings.create({ model: 'gpt-4o-mini', input: 'The food was delicious', encoding_format: 'float' });
    check('openai: embeddings.create (a string): one vector, made from that text', r.object === 'list' &&
        r.data.length === 1 && sameVec(r.data[0].embedding, 'The food was delicious') && r.usage.prompt_tokens > 0, r);
    const arr = await openai.embeddings.create({ model: 'gpt-4o-mini', input: ['alpha', 'beta gamma'], encoding_format: 'float' });
    check('openai: embeddings.create (an array): a vector per string, in order', arr.data.length === 2 &&
        arr.data[0].index === 0 && sameVec(arr.data[0].embedding, 'alpha') &&
        arr.data[1].index === 1 && sameVec(arr.data[1].embedding, 'beta gamma'), arr);
    const red = await openai.embeddings.create({ model: 'gpt-4o-mini', input: ['mail jane.doe@example.com'], encoding_format: 'float' });
    const e = red.data[0]?.embedding || [];
    // what was embedded is the redacted text: 'mail ' and a 16-character placeholder ([EMAIL_1_xxxxxx])
    check('openai: embeddings.create: the email is redacted before it is embedded', e.length === 4 &&
        !sameVec(e, 'mail jane.doe@example.com') && e[0] === 'mail '.length + 16 && e[2] === 'm'.charCodeAt(0) &&
        e[3] === ']'.charCodeAt(0), e);
});

await test('openai: embeddings.create, the SDK default encoding', async () => {
    // without encoding_format the SDK asks for base64 and decodes it itself
    const r = await openai.embeddings.create({ model: 'gpt-4o-mini', input: 'hello world' });
    const e = Array.from(r.data[0]?.embedding || []);
    check('openai: embeddings.create without encoding_format (SDK asks base64): the vector decoded',
        sameVec(e, 'hello world'), e);
});

await expectError('openai: embeddings.create with a secret -> PermissionDeniedError',
    () => openai.embeddings.create({ model: 'gpt-4o-mini', input: ['fine', PRIVATE_KEY], encoding_format: 'float' }),
    OpenAI.PermissionDeniedError, (e) => e.status === 403 && /no-secrets/.test(e.message));
await expectError('openai: embeddings.create with token arrays -> BadRequestError',
    () => openai.embeddings.create({ model: 'gpt-4o-mini', input: [[1, 2, 3]], encoding_format: 'float' }),
    OpenAI.BadRequestError, (e) => e.status === 400);

// the text of a Responses object's message items (a raw stream's response.completed has no
// output_text: the SDK adds that only to what it builds)
const outText = (r) => (r?.output || []).filter((o) => o.type === 'message')
    .flatMap((o) => o.content.filter((c) => c.type === 'output_text').map((c) => c.text)).join('');
// the body the mock last received, as it arrived (to see what left the gateway)
const mockLastBody = async () => (mockPort ? (await fetch(`http://127.0.0.1:${mockPort}/mock/last_body`)).text() : null);

await test('openai: responses.create', async () => {
    const { data: r, response } = await openai.responses.create({ model: 'gpt-4o-mini', input: 'MOCK:words=5' }).withResponse();
    check('openai: responses.create output_text, status and usage', r.object === 'response' && r.status === 'completed' &&
        r.output_text === words(5) && r.usage.output_tokens === 5 && r.usage.input_tokens > 0 &&
        r.usage.total_tokens === r.usage.input_tokens + 5, r);
    check('openai: responses.create x-airlock-route', response.headers.get('x-airlock-route') === 'oai/gpt-4o-mini',
        [...response.headers]);
    const items = await openai.responses.create({
        model: 'gpt-4o-mini', instructions: 'be brief',
        input: [{ role: 'user', content: [{ type: 'input_text', text: 'MOCK:words=3' }] }],
    });
    check('openai: responses.create with instructions and input items', items.output_text === words(3) &&
        items.output[0].type === 'message' && items.output[0].content[0].type === 'output_text', items);
});

await test('openai: responses.create stream', async () => {
    const stream = await openai.responses.create({ model: 'gpt-4o-mini', input: 'MOCK:words=7', stream: true });
    const types = [];
    let text = '', done = null, final = null;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        if (ev.type === 'response.output_text.done') done = ev.text;
        if (ev.type === 'response.completed') final = ev.response;
    }
    check('openai: responses stream: deltas, done text, completed with usage, in order', text === words(7) &&
        done === words(7) && types[0] === 'response.created' && types.at(-1) === 'response.completed' &&
        final && outText(final) === words(7) && final.usage.output_tokens === 7, { text, done, types, usage: final?.usage });
});

await test('openai: responses.stream helper', async () => {
    const runner = openai.responses.stream({ model: 'gpt-4o-mini', input: 'MOCK:slow MOCK:words=4' });
    let deltas = '';
    runner.on('response.output_text.delta', (e) => { deltas += e.delta; });
    const final = await runner.finalResponse();
    check('openai: responses.stream finalResponse', final.output_text === words(4) && deltas === words(4) &&
        final.status === 'completed', { deltas, final });
});

await test('openai: responses redaction round trip', async () => {
    const want = 'Sent to jane.doe@example.com now.';
    const r = await openai.responses.create({ model: 'gpt-4o-mini', input: 'mail jane.doe@example.com MOCK:split=Sent to %PH% now.' });
    const sent = await mockLastBody();
    check('openai: responses.create: the email restored in output_text', r.output_text === want, r);
    if (sent !== null)
        check('openai: responses.create: the mock saw a placeholder, not the email', /\[EMAIL_\d+_[a-z0-9]+\]/.test(sent) &&
            !sent.includes('jane.doe@example.com'), sent.slice(0, 400));

    const stream = await openai.responses.create({
        model: 'gpt-4o-mini', stream: true, input: [{ role: 'user', content: 'mail jane.doe@example.com MOCK:split=Sent to %PH% now.' }],
    });
    let text = '', done = null, final = null;
    for await (const ev of stream) {
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        if (ev.type === 'response.output_text.done') done = ev.text;
        if (ev.type === 'response.completed') final = ev.response;
    }
    check('openai: responses stream: the placeholder split over one-character deltas comes back restored everywhere',
        text === want && done === want && outText(final) === want, { text, done, final });

    const fc = await openai.responses.create({
        model: 'gpt-4o-mini', input: 'mail jane.doe@example.com MOCK:function_call MOCK:split=to=%PH%',
        tools: [{ type: 'function', name: 'lookup', parameters: { type: 'object', properties: {} } }],
    });
    const call = fc.output.find((o) => o.type === 'function_call');
    check('openai: responses.create: a function call\'s arguments restored', call && call.name === 'lookup' &&
        call.arguments === 'to=jane.doe@example.com', fc.output);
});

await expectError('openai: responses.create with a secret -> PermissionDeniedError',
    () => openai.responses.create({ model: 'gpt-4o-mini', instructions: 'be brief', input: [{ role: 'user', content: PRIVATE_KEY }] }),
    OpenAI.PermissionDeniedError, (e) => e.status === 403 && /no-secrets/.test(e.message) && !/MIIEow/.test(e.message));

await expectError('openai: 403 -> PermissionDeniedError naming the rule',
    () => openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PRIVATE_KEY }] }),
    OpenAI.PermissionDeniedError, (e) => e.status === 403 && /no-secrets/.test(e.message) && !/MIIEow/.test(e.message));
await expectError('openai: 401 -> AuthenticationError',
    () => new OpenAI({ apiKey: 'sk-wrong', baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    OpenAI.AuthenticationError, (e) => e.status === 401);
await expectError('openai: 404 -> NotFoundError',
    () => openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
    OpenAI.NotFoundError, (e) => e.status === 404);
await expectError('openai: 400 -> BadRequestError',
    () => openai.chat.completions.create({ model: 'gpt-4o-mini', messages: 'not a list' }),
    OpenAI.BadRequestError, (e) => e.status === 400);
await expectError('openai: upstream 429 -> RateLimitError',
    () => openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'MOCK:status_429' }] }),
    OpenAI.RateLimitError, (e) => e.status === 429);

await test('anthropic: messages.create', async () => {
    const { data: m, response } = await anthropic.messages
        .create({ model: 'claude-3-5-haiku', max_tokens: 100, messages: [{ role: 'user', content: 'hello' }] })
        .withResponse();
    check('anthropic: messages.create text', m.content[0].type === 'text' && m.content[0].text === DEFAULT, m);
    check('anthropic: model, stop_reason, usage', m.model === 'claude-3-5-haiku-20241022' &&
        m.stop_reason === 'end_turn' && m.usage.output_tokens === 8 && m.usage.input_tokens > 0, m);
    check('anthropic: x-airlock-route header', response.headers.get('x-airlock-route') === 'ant/claude-3-5-haiku',
        [...response.headers]);
});

await test('anthropic: stream: true', async () => {
    const stream = await anthropic.messages.create({
        model: 'claude-3-5-haiku', max_tokens: 100, stream: true,
        system: 'be brief', messages: [{ role: 'user', content: [{ type: 'text', text: 'MOCK:words=6' }] }],
    });
    const types = [];
    let text = '', out = null;
    for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
        if (ev.type === 'message_delta') out = ev.usage.output_tokens;
    }
    check('anthropic: stream events via for await', text === words(6) && types[0] === 'message_start' &&
        types.at(-1) === 'message_stop' && out === 6, { text, types, out });
});

await test('anthropic: messages.stream helper', async () => {
    const stream = anthropic.messages.stream({
        model: 'claude-3-5-haiku', max_tokens: 100, messages: [{ role: 'user', content: 'MOCK:slow MOCK:words=4' }],
    });
    let seen = '';
    stream.on('text', (t) => { seen += t; });
    const final = await stream.finalMessage();
    check('anthropic: messages.stream finalMessage', final.content[0].text === words(4) && seen === words(4) &&
        final.usage.output_tokens === 4, final);
});

await test('anthropic: openai model through the Anthropic SDK', async () => {
    const m = await anthropic.messages.create({
        model: 'gpt-4o-mini', max_tokens: 100, messages: [{ role: 'user', content: 'MOCK:words=2' }],
    });
    check('anthropic SDK -> openai provider: Anthropic-shaped answer', m.type === 'message' &&
        m.content[0].text === words(2) && m.model === 'gpt-4o-mini', m);
});

await expectError('anthropic: 403 -> PermissionDeniedError naming the rule',
    () => anthropic.messages.create({ model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'user', content: PRIVATE_KEY }] }),
    Anthropic.PermissionDeniedError, (e) => e.status === 403 && /no-secrets/.test(e.message));
await expectError('anthropic: 401 -> AuthenticationError',
    () => new Anthropic({ apiKey: 'sk-wrong', baseURL: base, maxRetries: 0 }).messages.create(
        { model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
    Anthropic.AuthenticationError, (e) => e.status === 401);
await expectError('anthropic: 404 -> NotFoundError',
    () => anthropic.messages.create({ model: 'nope', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
    Anthropic.NotFoundError, (e) => e.status === 404);

await test('anthropic: messages.countTokens', async () => {
    const r = await anthropic.messages.countTokens({
        model: 'claude-3-5-haiku', system: 'be brief', messages: [{ role: 'user', content: 'how many tokens is this?' }],
    });
    check('anthropic: messages.countTokens returns a number', typeof r.input_tokens === 'number' && r.input_tokens > 10, r);
    // the mock counts the body it received (bytes / 4): with ten long addresses redacted to
    // 16-character placeholders, the count is well below that of a body as long without them
    const mails = Array.from({ length: 10 }, (_, i) => `someone.with.a.long.name${i}@example-company.com`);
    const [mail, plainCount] = await Promise.all([mails.join(' '), mails.map((m) => 'x'.repeat(m.length)).join(' ')].map(
        (content) => anthropic.messages.countTokens({ model: 'claude-3-5-haiku', messages: [{ role: 'user', content }] })));
    check('anthropic: messages.countTokens counts the redacted body', typeof mail.input_tokens === 'number' &&
        plainCount.input_tokens - mail.input_tokens >= 60, { mail, plainCount });
});
await expectError('anthropic: messages.countTokens of a blocked body -> 403 APIError',
    () => anthropic.messages.countTokens({ model: 'claude-3-5-haiku', messages: [{ role: 'user', content: PRIVATE_KEY }] }),
    Anthropic.APIError, (e) => e.status === 403 && e instanceof Anthropic.PermissionDeniedError && /no-secrets/.test(e.message) &&
        !/MIIEow/.test(e.message));

// a provider failing mid-stream: the SDK iterator must throw, not hang or end quietly
await test('openai: provider breaks mid-stream', async () => {
    let text = '', err = null;
    try {
        const stream = await openai.chat.completions.create({
            model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'MOCK:reset_mid MOCK:words=20' }],
        });
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    } catch (e) {
        err = e;
    }
    check('openai: a stream the provider breaks raises an error after the first deltas',
        err instanceof OpenAI.APIError && text === 'word1 word2', { text, err: String(err) });
});
await test('anthropic: provider breaks mid-stream', async () => {
    let text = '', err = null;
    try {
        const stream = anthropic.messages.stream({
            model: 'claude-3-5-haiku', max_tokens: 100, messages: [{ role: 'user', content: 'MOCK:stall_mid MOCK:words=20' }],
        });
        stream.on('text', (t) => { text += t; });
        await stream.finalMessage();
    } catch (e) {
        err = e;
    }
    check('anthropic: a stream the provider stalls raises an error after the first deltas',
        err !== null && text === 'word1 word2', { text, err: String(err) });
});

if (mockPort) {
    const aborted = async () => (await (await fetch(`http://127.0.0.1:${mockPort}/mock/stats`)).json()).aborted;
    await test('openai: abort mid-stream cancels upstream', async () => {
        const before = await aborted();
        const stream = await openai.chat.completions.create({
            model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'MOCK:stall_mid MOCK:words=20' }],
        });
        let got = '';
        for await (const chunk of stream) {
            got += chunk.choices[0]?.delta?.content ?? '';
            if (got.includes('word2')) break; // leaving the loop aborts the request
        }
        let after = before;
        for (let i = 0; i < 60 && after === before; i++) {
            await new Promise((r) => setTimeout(r, 50));
            after = await aborted();
        }
        check('openai: leaving a stream early cancels the upstream request', got === 'word1 word2' && after > before,
            { got, before, after });
    });
}

// the 0.x SDK line authenticates with x-api-key (1.x sends Authorization: Bearer)
const anthropicV0 = new AnthropicV0({ apiKey: key, baseURL: base, maxRetries: 0, timeout: 20000 });
await test('anthropic 0.x SDK (x-api-key)', async () => {
    const m = await anthropicV0.messages.create({
        model: 'claude-3-5-haiku', max_tokens: 100, messages: [{ role: 'user', content: 'MOCK:words=3' }],
    });
    check('anthropic 0.x SDK (x-api-key): messages.create', m.content[0].text === words(3), m);
    const stream = anthropicV0.messages.stream({
        model: 'claude-3-5-haiku', max_tokens: 100, messages: [{ role: 'user', content: 'MOCK:words=5' }],
    });
    const final = await stream.finalMessage();
    check('anthropic 0.x SDK (x-api-key): messages.stream finalMessage', final.content[0].text === words(5), final);
});
await expectError('anthropic 0.x SDK: 403 -> PermissionDeniedError',
    () => anthropicV0.messages.create({ model: 'claude-3-5-haiku', max_tokens: 10, messages: [{ role: 'user', content: PRIVATE_KEY }] }),
    AnthropicV0.PermissionDeniedError, (e) => e.status === 403 && /no-secrets/.test(e.message));

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
