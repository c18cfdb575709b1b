// Drives the server with the official OpenAI client for server_test.go:
//   node client.cjs <scenario> <base URL> <API key>
// prints one JSON object with what the scenario observed (the Go test asserts on it).
// NODE_PATH points at the node_modules holding the `openai` package.
const { OpenAI, APIUserAbortError } = require('openai');

const [scenario, baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120000 });
const user = (content) => [{ role: 'user', content }];

// errorOf describes an error the client raised.
const errorOf = (e) => ({ status: e.status ?? null, type: e.type ?? e.error?.type ?? null, code: e.code ?? null, message: String(e.message) });

const soakPrompts = ['Tell me about the sea.', 'Name three colours.', 'What is a verb?', 'Write a short poem about bread.', 'Why is the sky blue?'];

// soakStream streams one greedy request and returns its text and finish reason (null when
// the stream ended without one: torn).
async function soakStream(prompt, opts, maxTokens = 16) {
  const s = await client.chat.completions.create({ model: 'm', messages: user(prompt), max_tokens: maxTokens, temperature: 0, stream: true }, opts);
  let text = '', finish = null;
  for await (const c of s) for (const ch of c.choices) { text += ch.delta?.content ?? ''; if (ch.finish_reason) finish = ch.finish_reason; }
  return { text, finish };
}

// dropMidStream starts a streaming request over raw HTTP and destroys the socket after
// `after` data chunks. It returns false when the server refused it with 429.
function dropMidStream(prompt, after) {
  const http = require('node:http');
  const body = JSON.stringify({ model: 'm', messages: user(prompt), max_tokens: 64, temperature: 0, stream: true });
  return new Promise((resolve, reject) => {
    const req = http.request(baseURL + '/chat/completions', {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      if (res.statusCode === 429) { res.resume(); res.on('end', () => resolve(false)); return; }
      if (res.statusCode !== 200) { reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode })); res.resume(); return; }
      let chunks = 0;
      res.on('data', () => { if (++chunks === after) { req.destroy(); resolve(true); } });
      res.on('end', () => resolve(true)); // ended before `after` chunks: nothing left to drop
    });
    req.on('error', (e) => { if (req.destroyed) resolve(true); else reject(e); });
    req.end(body);
  });
}

const scenarios = {
  // An image as a data: URL (IMAGE: a file path), asked for once, streamed once; then
  // refusals: a remote URL, bytes that are no image.
  async image() {
    const url = 'data:image/jpeg;base64,' + require('fs').readFileSync(process.env.IMAGE).toString('base64');
    const content = [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'Describe the image.' }];
    const r = await client.chat.completions.create({ model: 'm', messages: user(content), max_tokens: 8, temperature: 0 });
    const s = await client.chat.completions.create({
      model: 'm', messages: user(content), max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
    });
    let streamed = '', usage = null;
    for await (const c of s) {
      if (c.choices.length) streamed += c.choices[0].delta.content ?? '';
      if (c.usage) usage = c.usage;
    }
    const refused = {};
    for (const [name, u] of [['remote', 'https://example.com/a.png'], ['corrupt', 'data:image/png;base64,' + Buffer.from('no pixels').toString('base64')]]) {
      try {
        await client.chat.completions.create({ model: 'm', messages: user([{ type: 'image_url', image_url: { url: u } }, { type: 'text', text: 'x' }]), max_tokens: 2 });
      } catch (e) { refused[name] = errorOf(e); }
    }
    return { content: r.choices[0].message.content, usage: r.usage, streamed, streamUsage: usage, refused };
  },

  // A clip as input_audio (AUDIO: an MP3 file), asked for once; then refusals: an
  // unknown format, bytes that are no audio, an image to the audio projector.
  async audio() {
    const data = require('fs').readFileSync(process.env.AUDIO).toString('base64');
    const r = await client.chat.completions.create({
      model: 'm', max_tokens: 8, temperature: 0,
      messages: user([{ type: 'input_audio', input_audio: { data, format: 'mp3' } }, { type: 'text', text: 'What is said?' }]),
    });
    const refused = {};
    for (const [name, part] of [
      ['format', { type: 'input_audio', input_audio: { data, format: 'ogg' } }],
      ['corrupt', { type: 'input_audio', input_audio: { data: Buffer.from('no samples here').toString('base64'), format: 'wav' } }],
      ['image', { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,' + require('fs').readFileSync(process.env.IMAGE).toString('base64') } }],
    ]) {
      try {
        await client.chat.completions.create({ model: 'm', messages: user([part, { type: 'text', text: 'x' }]), max_tokens: 2 });
      } catch (e) { refused[name] = errorOf(e); }
    }
    return { content: r.choices[0].message.content, usage: r.usage, refused };
  },

  async models() {
    const list = await client.models.list();
    const ids = [];
    for await (const m of list) ids.push(m.id);
    const one = await client.models.retrieve(ids[0]);
    let missing = null;
    try { await client.models.retrieve('no-such-model'); } catch (e) { missing = errorOf(e); }
    return { ids, one: one.id, missing };
  },

  async chat() {
    const r = await client.chat.completions.create({
      model: 'm', messages: [{ role: 'system', content: 'Be brief.' }, ...user('Say hello.')],
      max_tokens: 12, temperature: 0, seed: 1,
    });
    return { object: r.object, id: r.id, choices: r.choices, usage: r.usage };
  },

  async stream() {
    const s = await client.chat.completions.create({
      model: 'm', messages: user('Count to five.'), max_tokens: 12, temperature: 0,
      stream: true, stream_options: { include_usage: true },
    });
    let text = '', chunks = 0, finish = null, usage = null, role = null;
    for await (const c of s) {
      chunks++;
      if (c.usage) usage = c.usage;
      for (const ch of c.choices) {
        if (ch.delta?.role) role = ch.delta.role;
        if (ch.delta?.content) text += ch.delta.content;
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    // The same request without streaming, for comparison.
    const r = await client.chat.completions.create({ model: 'm', messages: user('Count to five.'), max_tokens: 12, temperature: 0 });
    return { text, chunks, finish, usage, role, nonStreamText: r.choices[0].message.content };
  },

  async tools() {
    const tools = [{
      type: 'function',
      function: {
        name: 'get_weather', description: 'The weather in a city.',
        parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Rome'] } }, required: ['city'] },
      },
    }];
    // Random weights rarely call a tool (upstream's grammars allow text before a call),
    // so this checks the protocol: tools accepted, a call and its result in the history.
    const r = await client.chat.completions.create({ model: 'm', messages: user('Weather in Paris?'), tools, max_tokens: 16, temperature: 0 });
    const s = await client.chat.completions.create({ model: 'm', messages: user('Weather in Paris?'), tools, tool_choice: 'required', max_tokens: 16, temperature: 0, stream: true });
    let streamFinish = null;
    for await (const c of s) for (const ch of c.choices) if (ch.finish_reason) streamFinish = ch.finish_reason;
    const followUp = await client.chat.completions.create({
      model: 'm', tools, max_tokens: 8, temperature: 0,
      messages: [...user('Weather in Paris?'),
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '{"sky":"clear"}' }],
    });
    let badTool = null;
    try {
      await client.chat.completions.create({ model: 'm', messages: user('x'), tools: [{ type: 'function', function: { name: '', parameters: {} } }] });
    } catch (e) { badTool = errorOf(e); }
    return { finish: r.choices[0].finish_reason, role: r.choices[0].message.role, streamFinish, followUp: followUp.choices[0].finish_reason, followUpPrompt: followUp.usage.prompt_tokens, badTool };
  },

  // logprobs: chat and completions, streamed and not, greedy.
  async logprobs() {
    const msgs = user('Count to five.');
    const chat = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 });
    const s = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2, stream: true });
    const streamed = [];
    for await (const c of s) for (const ch of c.choices) if (ch.logprobs?.content) streamed.push(...ch.logprobs.content);
    const plain = await client.chat.completions.create({ model: 'm', messages: msgs, max_tokens: 6, temperature: 0 });
    const comp = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2 });
    const cs = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 6, temperature: 0, logprobs: 2, stream: true });
    const compStreamed = [];
    for await (const c of cs) for (const ch of c.choices) if (ch.logprobs) compStreamed.push(ch.logprobs);
    return {
      chat: chat.choices[0].logprobs, chatTokens: chat.usage.completion_tokens, chatText: chat.choices[0].message.content,
      streamed, plainLogprobs: plain.choices[0].logprobs ?? null,
      comp: comp.choices[0].logprobs, compText: comp.choices[0].text, compStreamed,
    };
  },

  async json() {
    const schema = {
      type: 'object', additionalProperties: false, required: ['name', 'age', 'tags'],
      properties: { name: { type: 'string', maxLength: 12 }, age: { type: 'integer', minimum: 0, maximum: 150 }, tags: { type: 'array', items: { type: 'string', enum: ['a', 'b'] }, maxItems: 3 } },
    };
    const out = [];
    for (const seed of [1, 2, 3]) {
      const r = await client.chat.completions.create({
        model: 'm', messages: user('A person as JSON.'), max_tokens: 200, seed, temperature: 1,
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
      });
      out.push({ content: r.choices[0].message.content, finish: r.choices[0].finish_reason });
    }
    return { results: out };
  },

  async completions() {
    const r = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
    const s = await client.completions.create({ model: 'm', prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    return { object: r.object, text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage, streamText: text };
  },

  async embeddings() {
    const r = await client.embeddings.create({ model: 'm', input: ['first text', 'second, longer text'] }); // base64 on the wire
    const f = await client.embeddings.create({ model: 'm', input: 'first text', encoding_format: 'float' });
    return { n: r.data.length, dims: r.data.map((d) => d.embedding.length), first: r.data[0].embedding, firstFloat: f.data[0].embedding, usage: r.usage };
  },

  async errors() {
    const out = {};
    const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
    try { await bad.chat.completions.create({ model: 'm', messages: user('hi') }); } catch (e) { out.auth = errorOf(e); }
    try { await client.chat.completions.create({ model: 'm', messages: [] }); } catch (e) { out.empty = errorOf(e); }
    try { await client.chat.completions.create({ model: 'm', messages: [{ role: 'wizard', content: 'x' }] }); } catch (e) { out.role = errorOf(e); }
    try { await client.chat.completions.create({ model: 'm', messages: user('hi'), temperature: 7 }); } catch (e) { out.temperature = errorOf(e); }
    try { await client.chat.completions.create({ model: 'm', messages: user('word '.repeat(5000)) }); } catch (e) { out.tooLong = errorOf(e); }
    try { await client.chat.completions.create({ model: 'm', messages: user('x'.repeat(9 << 20)) }); } catch (e) { out.tooLarge = errorOf(e); }
    try {
      await client.chat.completions.create({ model: 'm', messages: user('hi'), response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'nonsense' } } } });
    } catch (e) { out.schema = errorOf(e); }
    // After all that, a valid request works.
    const ok = await client.chat.completions.create({ model: 'm', messages: user('hi'), max_tokens: 2 });
    out.okAfter = ok.choices[0].finish_reason;
    return out;
  },

  // load: many concurrent streaming clients, a fixed number of requests.
  async load() {
    const clients = Number(process.env.CLIENTS ?? 32), requests = Number(process.env.REQUESTS ?? 96), maxTokens = Number(process.env.MAX_TOKENS ?? 16);
    let next = 0, complete = 0, malformed = 0, tokens = 0;
    const errors = [];
    const start = performance.now();
    const worker = async (w) => {
      while (next < requests) {
        const i = next++;
        try {
          const s = await client.chat.completions.create({
            model: 'm', messages: user(`Request ${i} from client ${w}: tell a story.`), max_tokens: maxTokens,
            stream: true, stream_options: { include_usage: true },
          });
          let finish = null, usage = null, chunks = 0;
          for await (const c of s) {
            chunks++;
            if (c.usage) usage = c.usage;
            for (const ch of c.choices) if (ch.finish_reason) finish = ch.finish_reason;
          }
          if (finish && usage && usage.completion_tokens > 0 && chunks >= 2) { complete++; tokens += usage.completion_tokens; } else malformed++;
        } catch (e) { errors.push(errorOf(e)); }
      }
    };
    await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
    const seconds = (performance.now() - start) / 1000;
    return { clients, requests, complete, malformed, errors, tokens, seconds, requestsPerSecond: requests / seconds, tokensPerSecond: tokens / seconds };
  },

  // soakAlone: each soak prompt alone, greedy and streamed: the texts soak expects.
  async soakAlone() {
    const texts = [];
    for (const p of soakPrompts) texts.push((await soakStream(p, {})).text);
    return { texts };
  },

  // soak: CLIENTS streaming clients for SECONDS. A third complete their requests (the text
  // must equal soakAlone's), a third drop the connection mid-stream, a third cancel at a
  // random moment (queued or streaming). A full queue answers 429: back off and go on.
  async soak() {
    const clients = Number(process.env.CLIENTS ?? 64), seconds = Number(process.env.SECONDS ?? 20);
    const expect = JSON.parse(process.env.EXPECT);
    const r = { completed: 0, disconnected: 0, cancelled: 0, cancelledAfterEnd: 0, rejected: 0, torn: 0, mismatches: [], errors: [] };
    const deadline = performance.now() + seconds * 1000;
    const backoff = () => new Promise((ok) => setTimeout(ok, 50 + Math.random() * 200));
    const worker = async (w) => {
      for (let n = 0; performance.now() < deadline; n++) {
        const i = (w + n) % soakPrompts.length;
        try {
          if (w % 3 === 0) {
            const got = await soakStream(soakPrompts[i], {});
            if (got.finish === null) r.torn++;
            else if (got.text !== expect[i]) r.mismatches.push({ prompt: i, got: got.text, want: expect[i] });
            else r.completed++;
          } else if (w % 3 === 1) {
            if (await dropMidStream(soakPrompts[i], 1 + Math.floor(Math.random() * 6))) r.disconnected++;
            else r.rejected++;
          } else {
            // The client's stream ends quietly when cancelled mid-way; before the response
            // it throws APIUserAbortError.
            const ac = new AbortController();
            setTimeout(() => ac.abort(), Math.random() * 400);
            const got = await soakStream(soakPrompts[i], { signal: ac.signal }, 64);
            if (got.finish !== null) r.cancelledAfterEnd++;
            else if (ac.signal.aborted) r.cancelled++;
            else r.torn++;
          }
        } catch (e) {
          if (e.status === 429) { r.rejected++; await backoff(); }
          else if (e instanceof APIUserAbortError) r.cancelled++;
          else r.errors.push(errorOf(e));
        }
      }
    };
    await Promise.all(Array.from({ length: clients }, (_, w) => worker(w)));
    return r;
  },

  // inflight: STREAMS streaming requests, half short and half long; prints STARTED to
  // stderr once SLOTS of them stream, then reports how each ended (the shutdown test).
  async inflight() {
    const streams = Number(process.env.STREAMS ?? 8), slots = Number(process.env.SLOTS ?? 4);
    let started = 0;
    const one = async (k) => {
      let text = '', finish = null, error = null, counted = false;
      try {
        const s = await client.chat.completions.create({ model: 'm', messages: user(`Stream ${k}: go on.`), max_tokens: k % 2 ? 4000 : 24, temperature: 0, stream: true });
        for await (const c of s) {
          for (const ch of c.choices) { text += ch.delta?.content ?? ''; if (ch.finish_reason) finish = ch.finish_reason; }
          if (text && !counted) { counted = true; if (++started === slots) process.stderr.write('STARTED\n'); }
        }
      } catch (e) { error = errorOf(e); }
      return { finish, error, length: text.length };
    };
    return { streams: await Promise.all(Array.from({ length: streams }, (_, k) => one(k))) };
  },

  // slow: one long streaming request; reports how it ended (for the shutdown test).
  async slow() {
    const s = await client.chat.completions.create({ model: 'm', messages: user('Go on and on.'), max_tokens: Number(process.env.MAX_TOKENS ?? 400), stream: true });
    let text = '', finish = null, error = null;
    try {
      for await (const c of s) {
        for (const ch of c.choices) { text += ch.delta?.content ?? ''; if (ch.finish_reason) finish = ch.finish_reason; }
        if (text && !process.env.STARTED_SENT) { process.env.STARTED_SENT = '1'; process.stderr.write('STARTED\n'); }
      }
    } catch (e) { error = errorOf(e); }
    return { finish, error, length: text.length };
  },
};

scenarios[scenario]().then(
  (r) => { process.stdout.write(JSON.stringify(r)); },
  (e) => { process.stdout.write(JSON.stringify({ fatal: errorOf(e) })); process.exitCode = 1; },
);
