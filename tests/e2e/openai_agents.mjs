// openai_agents.mjs -- the OpenAI Agents SDK for JS (@openai/agents 0.12, the last line on
// the openai 6 package, which runs on node 20) pointed at airlock through
// setDefaultOpenAIClient(new OpenAI({ baseURL })). Its default model API is Responses;
// setOpenAIAPI('chat_completions') switches to Chat Completions. A function tool shows the
// whole loop: the model's call arguments reach the tool with the placeholder restored, and
// the tool's output goes back out redacted. Prints ok/FAIL lines and the closing
// `N passed, N failed`.
import { Agent, MaxTurnsExceededError, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled, tool } from '@openai/agents';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { z } from 'zod';
import {
    CLIENT, PLACEHOLDER, Suite, gatewayConfig, here, mockRecords, sanitizerReport, startAirlock, startMock, startRelay,
    stopAirlock, words,
} from './lib.mjs';

const s = new Suite('openai_agents');
s.requireBuilt();
console.log(`@openai/agents ${JSON.parse(fs.readFileSync(path.join(here, 'node_modules', '@openai', 'agents', 'package.json'))).version}`);

const mock = await startMock(s, { record: path.join(s.tmp, 'mock-record') });
const gw = await startAirlock(s, 'gateway', (port) => gatewayConfig({ port, mockPort: mock.port }));
if (!gw) s.finish('FAIL openai_agents: the gateway did not start', true);
const relay = await startRelay(gw.port);
setTracingDisabled(true); // no traces to api.openai.com
setDefaultOpenAIClient(new OpenAI({ baseURL: `http://127.0.0.1:${relay.port}/v1`, apiKey: CLIENT, maxRetries: 0 }));
const EMAIL = 'jane.doe@example.com';
const lastPath = () => relay.seen.filter((q) => q.method === 'POST').at(-1)?.url;
const agent = new Agent({ name: 'helper', instructions: 'be brief', model: 'gpt-4o-mini' });

await s.test('run: Responses', async () => {
    const r = await run(agent, 'MOCK:words=4');
    s.check('run(agent) asks POST /v1/responses and returns the answer', lastPath() === '/v1/responses' &&
        r.finalOutput === words(4), { path: lastPath(), out: r.finalOutput });

    const n0 = mockRecords(mock).length;
    const st = await run(agent, `mail ${EMAIL} MOCK:split=Sent to %PH% now.`, { stream: true });
    let text = '';
    for await (const t of st.toTextStream()) text += t;
    await st.completed;
    const sent = mockRecords(mock).slice(n0);
    s.check('run(..., { stream: true }): the email restored across one-character deltas, a placeholder upstream',
        text === `Sent to ${EMAIL} now.` && st.finalOutput === text && sent.length === 1 && !sent[0].text.includes(EMAIL) &&
        PLACEHOLDER.test(sent[0].text), { text, final: st.finalOutput });
});

await s.test('a function tool loop', async () => {
    const calls = [];
    const lookup = tool({
        name: 'lookup', description: 'look a contact up', parameters: z.object({ q: z.string() }),
        execute: async ({ q }) => { calls.push(q); return `record for ${q}: bob.smith@example.org`; },
    });
    const withTool = new Agent({ name: 'tools', instructions: 'use lookup', model: 'gpt-4o-mini', tools: [lookup] });
    const n0 = mockRecords(mock).length;
    let err = null;
    try {
        // the mock keeps calling the tool (its answer follows the last user message), so the
        // run ends at maxTurns after the tool's output has gone back once
        await run(withTool, `find ${EMAIL} MOCK:function_call MOCK:split={"q":"%PH%"}`, { maxTurns: 2 });
    } catch (e) {
        err = e;
    }
    const recs = mockRecords(mock).slice(n0);
    const outputs = (recs[1]?.body?.input || []).filter((i) => i.type === 'function_call_output');
    s.check('the tool got the model\'s arguments with the placeholder restored', calls.length >= 1 && calls[0] === EMAIL, calls);
    s.check('its output went back as function_call_output, the addresses in it redacted', recs.length === 2 && outputs.length === 1 &&
        PLACEHOLDER.test(JSON.stringify(outputs[0])) && !recs.some((x) => x.text.includes(EMAIL) || x.text.includes('bob.smith@example.org')),
    outputs);
    s.check('the run stopped at maxTurns (the mock never stops calling)', err instanceof MaxTurnsExceededError, String(err));
});

await s.test('chat_completions', async () => {
    setOpenAIAPI('chat_completions');
    const r = await run(new Agent({ name: 'chat', instructions: 'be brief', model: 'gpt-4o-mini' }), 'MOCK:words=3');
    s.check('with setOpenAIAPI(\'chat_completions\'): POST /v1/chat/completions', lastPath() === '/v1/chat/completions' &&
        r.finalOutput === words(3), { path: lastPath(), out: r.finalOutput });
    let err = null;
    try {
        await run(new Agent({ name: 'chat', model: 'gpt-4o-mini' }), 'deploy with AKIAIOSFODNN7EXAMPLE');
    } catch (e) {
        err = e;
    }
    s.check('a secret: the run fails with the gateway\'s 403 naming the rule', err && /403/.test(String(err.status ?? err.message)) &&
        /no-secrets/.test(err.message), String(err));
    setOpenAIAPI('responses');
});

relay.close();
const code = await stopAirlock(gw);
s.check('gateway: SIGTERM after the clients, exit 0', code === 0, code);
s.check('gateway: no sanitizer report in its stderr', sanitizerReport(gw) === '', sanitizerReport(gw));
s.finish();
