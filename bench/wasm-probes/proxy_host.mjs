// A minimal proxy-wasm host in node, for bench/footprint.py only (never a
// test of the filter: tests run it inside a real Envoy). It loads the
// filter module with a policy, then drives N allowed 1 KiB `tools/call`
// requests through the callbacks Envoy makes (context create, request
// headers, body, response headers, body, delete), answering the module's
// host calls as Envoy would for that request. Run under callgrind with V8's
// code log, this tells which of the module's functions a request runs and
// how much machine code each touches.
//
//   node --no-liftoff --no-wasm-lazy-compilation proxy_host.mjs <module.wasm> <policy.json> <requests> [hold|stream]
//
// Prints the host calls per request and how many requests were forwarded
// (all must be: the numbers describe the allowed path).
import { readFileSync } from "node:fs";
import process from "node:process";

const [, , wasmPath, policyPath, requestsArg, modeArg] = process.argv;
const REQUESTS = Number(requestsArg || 100);
const MODE = modeArg || "hold";
const OK = 0;
const NOT_FOUND = 1;
const CAS_MISMATCH = 8;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

let instance;
const view = () => new DataView(instance.exports.memory.buffer);
const bytes = (ptr, len) => new Uint8Array(instance.exports.memory.buffer, ptr, len);
const text = (ptr, len) => decoder.decode(bytes(ptr, len).slice());

/** Hands bytes to the module the way Envoy does: memory the module allocates. */
function give(value, retData, retSize) {
  if (value.length === 0) {
    view().setUint32(retData, 0, true);
    view().setUint32(retSize, 0, true);
    return OK;
  }
  const ptr = instance.exports.proxy_on_memory_allocate(value.length);
  bytes(ptr, value.length).set(value);
  view().setUint32(retData, ptr, true);
  view().setUint32(retSize, value.length, true);
  return OK;
}

/** A header map in proxy-wasm's serialisation: count, sizes, NUL-ended strings. */
function serialise(headers) {
  const parts = headers.map(([k, v]) => [encoder.encode(k), encoder.encode(v)]);
  let size = 4;
  for (const [k, v] of parts) size += 8 + k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let at = 4;
  for (const [k, v] of parts) {
    dv.setUint32(at, k.length, true);
    dv.setUint32(at + 4, v.length, true);
    at += 8;
  }
  for (const [k, v] of parts) {
    out.set(k, at);
    at += k.length + 1;
    out.set(v, at);
    at += v.length + 1;
  }
  return out;
}

/** The benchmark's allowed call (bench/harness.py `body`), `size` bytes. */
function callBody(size) {
  const head =
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs",' +
    '"arguments":{"query":"quarterly report owners","limit":10,"index":"engineering","content":"';
  const tail = '"}}}';
  const room = size - head.length - tail.length;
  const filler = "lorem ipsum dolor sit amet ";
  return encoder.encode(head + filler.repeat(Math.ceil(room / filler.length)).slice(0, room) + tail);
}

const requestBody = callBody(1024);
const responseBody = encoder.encode(
  '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}',
);
const configuration = {
  6: encoder.encode(MODE === "hold" ? '{"header_mode":"hold"}' : "{}"),
  7: readFileSync(policyPath),
};
const shared = new Map();
let nextCas = 1;
let headers = { 0: [], 2: [] };
let requestIndex = 0;
let reply = null;
const calls = {};

const env = {
  proxy_log: (level, ptr, len) => {
    if (level >= 3) console.error(`module log ${level}: ${text(ptr, len)}`);
    return OK;
  },
  // A fixed clock, one millisecond per request: the rate-limit work (records
  // joined within a millisecond, or added) is then the same on every run.
  proxy_get_current_time_nanoseconds: (ret) => {
    view().setBigUint64(ret, (1800000000000n + BigInt(requestIndex)) * 1000000n, true);
    return OK;
  },
  proxy_get_buffer_bytes: (type, start, max, retData, retSize) => {
    const buffer = { 0: requestBody, 1: responseBody }[type] ?? configuration[type];
    if (!buffer) return NOT_FOUND;
    return give(buffer.subarray(start, Math.min(buffer.length, start + max)), retData, retSize);
  },
  proxy_set_buffer_bytes: () => OK,
  proxy_get_header_map_value: (map, keyPtr, keyLen, retData, retSize) => {
    const key = text(keyPtr, keyLen);
    const hit = (headers[map] ?? []).find(([name]) => name === key);
    return hit ? give(encoder.encode(hit[1]), retData, retSize) : NOT_FOUND;
  },
  proxy_get_header_map_pairs: (map, retData, retSize) => give(serialise(headers[map] ?? []), retData, retSize),
  proxy_remove_header_map_value: () => OK,
  proxy_get_property: () => NOT_FOUND,
  proxy_set_property: () => OK,
  proxy_get_shared_data: (keyPtr, keyLen, retData, retSize, retCas) => {
    const entry = shared.get(text(keyPtr, keyLen));
    if (!entry) return NOT_FOUND;
    give(entry.value, retData, retSize);
    view().setUint32(retCas, entry.cas, true);
    return OK;
  },
  proxy_set_shared_data: (keyPtr, keyLen, valuePtr, valueLen, cas) => {
    const key = text(keyPtr, keyLen);
    const entry = shared.get(key);
    if (entry && cas !== 0 && cas !== entry.cas) return CAS_MISMATCH;
    shared.set(key, { value: bytes(valuePtr, valueLen).slice(), cas: nextCas++ });
    return OK;
  },
  proxy_send_local_response: (status) => {
    reply = status;
    return OK;
  },
  proxy_continue_stream: () => OK,
  proxy_close_stream: () => OK,
  proxy_define_metric: (type, ptr, len, ret) => {
    view().setUint32(ret, 1, true);
    return OK;
  },
  proxy_increment_metric: () => OK,
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_set_effective_context: () => OK,
  proxy_http_call: () => NOT_FOUND,
  proxy_grpc_call: () => NOT_FOUND,
};
for (const [name, f] of Object.entries(env)) {
  env[name] = (...args) => {
    calls[name] = (calls[name] ?? 0) + 1;
    return f(...args);
  };
}
const wasi = {
  random_get: (ptr, len) => {
    bytes(ptr, len).fill(7);
    return OK;
  },
  environ_get: () => OK,
  environ_sizes_get: (count, size) => {
    view().setUint32(count, 0, true);
    view().setUint32(size, 0, true);
    return OK;
  },
  fd_write: (fd, iovs, count, written) => {
    let total = 0;
    for (let i = 0; i < count; i++) total += view().getUint32(iovs + i * 8 + 4, true);
    view().setUint32(written, total, true);
    return OK;
  },
  proc_exit: (code) => {
    throw new Error(`module exited with ${code}`);
  },
};

instance = await WebAssembly.instantiate(await WebAssembly.compile(readFileSync(wasmPath)), {
  env,
  wasi_snapshot_preview1: wasi,
});
const x = instance.exports;
x._initialize?.();
const ROOT = 1;
x.proxy_on_context_create(ROOT, 0);
if (!x.proxy_on_vm_start(ROOT, configuration[6].length)) throw new Error("the module refused its VM configuration");
if (!x.proxy_on_configure(ROOT, configuration[7].length)) throw new Error("the module refused the policy");

for (const k of Object.keys(calls)) delete calls[k];
let forwarded = 0;
for (let i = 0; i < REQUESTS; i++) {
  const id = ROOT + 1 + i;
  requestIndex = i;
  reply = null;
  headers = {
    0: [
      [":authority", "localhost"],
      [":path", "/mcp"],
      [":method", "POST"],
      [":scheme", "http"],
      ["content-type", "application/json"],
      ["accept", "application/json, text/event-stream"],
      ["authorization", "Bearer bench-token"],
      ["mcp-session-id", "bench-session"],
      ["content-length", String(requestBody.length)],
      ["x-forwarded-proto", "http"],
      ["x-request-id", `4b6c3c52-7f0e-4a53-9f0f-${100000000000 + i}`],
    ],
    2: [
      [":status", "200"],
      ["content-type", "application/json"],
      ["content-length", String(responseBody.length)],
    ],
  };
  x.proxy_on_context_create(id, ROOT);
  x.proxy_on_request_headers(id, headers[0].length, 0);
  if (x.proxy_on_request_body(id, requestBody.length, 1) === 0 && reply === null) forwarded++;
  x.proxy_on_response_headers(id, headers[2].length, 0);
  x.proxy_on_response_body(id, responseBody.length, 1);
  x.proxy_on_delete(id);
}
const perRequest = Object.fromEntries(Object.entries(calls).map(([k, v]) => [k, v / REQUESTS]));
console.log(`HOST_CALLS ${JSON.stringify(perRequest)}`);
console.log(`FORWARDED ${forwarded} of ${REQUESTS}`);
if (forwarded !== REQUESTS) process.exitCode = 1;
