// An MCP server (TypeScript SDK) that checks bearer tokens with the SDK's own
// `requireBearerAuth` middleware, which reads the credential as
// `header.split(' ')`: the scheme compared case-insensitively, the second
// word taken as the token, anything after it ignored. The verifier accepts
// any token of the form `tok-<32 hex>` exactly (each test uses its own).
// The tool `echo` answers the token it ran for. Stateless Streamable HTTP
// with JSON answers. Usage: node bearer_server.mjs PORT
import express from "express";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";

const port = Number(process.argv[2]);
const verifier = {
  async verifyAccessToken(token) {
    if (!/^tok-[0-9a-f]{32}$/.test(token)) throw new InvalidTokenError("unknown token");
    return { token, clientId: "test", scopes: [], expiresAt: Math.floor(Date.now() / 1000) + 3600 };
  },
};

const app = express();
app.use(express.json());
app.post("/mcp", requireBearerAuth({ verifier }), async (req, res) => {
  const server = new McpServer({ name: "bearer-check", version: "1.0.0" });
  server.tool("echo", async (extra) => ({
    content: [{ type: "text", text: `ran for ${extra.authInfo?.token}` }],
  }));
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});
app.listen(port, "127.0.0.1");
