#!/usr/bin/env node
// A scripted MCP client on the official TypeScript SDK (@modelcontextprotocol/sdk).
//
//   node tests/clients/ts_client.mjs '<plan JSON>'
//
// The plan: {"url": ..., "transport": "http" | "sse", "timeout_ms": 5000,
//            "headers": {...}, "steps": [{"op": "list_tools"},
//            {"op": "call", "name": "echo", "args": {...}}, {"op": "ping"}]}
// (also "list_resources", "list_resource_templates", "read_resource" with the
// URI as "name", "list_prompts", "get_prompt" with "name" and "args")
//
// Every step runs on ONE session, in order; a failing step does not stop the
// plan (the point is to see whether the session survives a refusal). Prints
// one JSON object on stdout: the negotiated protocol version, each step's
// outcome ({ok, result} or {ok: false, error: {type, code, message, data}})
// and every HTTP exchange the transport made (method, JSON-RPC method, the
// routing headers it sent, the status it got), so the Python driver can
// check both what the SDK raised and what went over the wire.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";

const plan = JSON.parse(process.argv[2] ?? "{}");
const timeout = plan.timeout_ms ?? 5000;
const exchanges = [];
const inFlight = new Set();

// Records each request the SDK makes and the status it gets back.
async function recordingFetch(input, init = {}) {
  const headers = new Headers(init.headers ?? {});
  let rpcMethod = null;
  if (typeof init.body === "string") {
    try {
      const body = JSON.parse(init.body);
      rpcMethod = Array.isArray(body) ? body.map((m) => m.method ?? null) : (body.method ?? null);
    } catch {
      rpcMethod = "<unparsable>";
    }
  }
  const entry = {
    http_method: init.method ?? "GET",
    path: new URL(input instanceof Request ? input.url : String(input)).pathname,
    rpc_method: rpcMethod,
    accept: headers.get("accept"),
    mcp_method: headers.get("mcp-method"),
    mcp_name: headers.get("mcp-name"),
    protocol_version: headers.get("mcp-protocol-version"),
    status: null,
    content_type: null,
  };
  exchanges.push(entry);
  // On the legacy SSE transport a call's answer can arrive on the stream
  // before its POST's own answer: remember the fetch so the report waits.
  const pending = fetch(input, init).then((response) => {
    entry.status = response.status;
    entry.content_type = response.headers.get("content-type");
    return response;
  });
  inFlight.add(pending);
  pending.finally(() => inFlight.delete(pending)).catch(() => {});
  return await pending;
}

function describeError(error) {
  if (error instanceof McpError) {
    return { type: "McpError", code: error.code, message: error.message, data: error.data ?? null };
  }
  return {
    type: error?.constructor?.name ?? typeof error,
    code: typeof error?.code === "number" ? error.code : null,
    message: String(error?.message ?? error),
    data: null,
  };
}

async function runStep(client, step) {
  const options = { timeout };
  switch (step.op) {
    case "list_tools":
      return await client.listTools(undefined, options);
    case "call":
      return await client.callTool({ name: step.name, arguments: step.args ?? {} }, undefined, options);
    case "ping":
      return await client.ping(options);
    case "list_resources":
      return await client.listResources(undefined, options);
    case "list_resource_templates":
      return await client.listResourceTemplates(undefined, options);
    case "read_resource":
      return await client.readResource({ uri: step.name }, options);
    case "list_prompts":
      return await client.listPrompts(undefined, options);
    case "get_prompt":
      return await client.getPrompt({ name: step.name, arguments: step.args ?? {} }, options);
    default:
      throw new Error(`unknown op ${step.op}`);
  }
}

async function main() {
  const url = new URL(plan.url);
  const transportOptions = { fetch: recordingFetch, requestInit: { headers: plan.headers ?? {} } };
  const transport = plan.transport === "sse"
    ? new SSEClientTransport(url, { ...transportOptions, eventSourceInit: { fetch: recordingFetch } })
    : new StreamableHTTPClientTransport(url, transportOptions);
  const transportErrors = [];
  const client = new Client({ name: "mcp-policy-ts-client", version: "1.0.0" });
  const out = { client: "typescript-sdk", transport: plan.transport, steps: [], exchanges, transport_errors: transportErrors };
  try {
    await client.connect(transport, { timeout });
    // After connect: the SDK's Protocol sets transport.onerror itself.
    const sdkOnError = transport.onerror;
    transport.onerror = (error) => {
      transportErrors.push(String(error?.message ?? error));
      sdkOnError?.(error);
    };
    out.connected = true;
    out.protocol_version = transport.protocolVersion ?? transport._protocolVersion ?? null;
    out.server = client.getServerVersion() ?? null;
  } catch (error) {
    out.connected = false;
    out.connect_error = describeError(error);
  }
  if (out.connected) {
    for (const step of plan.steps ?? []) {
      const started = Date.now();
      try {
        const result = await runStep(client, step);
        out.steps.push({ op: step.op, name: step.name ?? null, ok: true, result, elapsed_ms: Date.now() - started });
      } catch (error) {
        out.steps.push({ op: step.op, name: step.name ?? null, ok: false, error: describeError(error), elapsed_ms: Date.now() - started });
      }
    }
  }
  // Bounded: a fetch that never answers must not hang the report.
  await Promise.race([
    Promise.allSettled([...inFlight]),
    new Promise((resolve) => setTimeout(resolve, 5000)),
  ]);
  try {
    await client.close();
  } catch {
    // closing a broken session is not what is tested
  }
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ client: "typescript-sdk", fatal: describeError(error), exchanges }) + "\n");
  process.exit(2);
});
