// One session through the client generated from openapi.yaml (openapi-typescript + openapi-fetch):
// register, log in, create an agent, execute it on the echo provider, poll the execution until it
// completes, read its events and its costs. Every step checks what the server answered, so a
// change to the contract that breaks this client makes the flow exit non-zero.
//
//   CADRE_URL=http://127.0.0.1:8000 npm run flow
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import createClient from "openapi-fetch";

import type { components, paths } from "../generated/schema.js";

type Execution = components["schemas"]["Execution"];

const baseUrl = process.env.CADRE_URL;
assert.ok(baseUrl, "set CADRE_URL to a running Cadre server");
const suffix = process.env.CADRE_FLOW_SUFFIX ?? `${Date.now()}`;
const username = `ts_flow_${suffix}`;
const password = "ts-flow-pass-1";
const task = "hello world";

const anonymous = createClient<paths>({ baseUrl });

const registered = await anonymous.POST("/api/v1/auth/register", {
  body: { email: `${username}@example.com`, username, password, full_name: "TypeScript Flow" },
});
assert.equal(registered.response.status, 201, JSON.stringify(registered.error));
assert.ok(registered.data);
assert.equal(registered.data.username, username);
assert.equal(registered.data.role, "user");

const loggedIn = await anonymous.POST("/api/v1/auth/login", {
  body: { username, password },
});
assert.equal(loggedIn.response.status, 200, JSON.stringify(loggedIn.error));
assert.ok(loggedIn.data);
assert.equal(loggedIn.data.token_type, "bearer");
assert.ok(loggedIn.data.access_token.length > 20);

const client = createClient<paths>({
  baseUrl,
  headers: { Authorization: `Bearer ${loggedIn.data.access_token}` },
});

const me = await client.GET("/api/v1/auth/me");
assert.equal(me.response.status, 200, JSON.stringify(me.error));
assert.equal(me.data?.username, username);

const wrong = await anonymous.POST("/api/v1/auth/login", {
  body: { username, password: "not-the-password-1" },
});
assert.equal(wrong.response.status, 401);
assert.equal(wrong.error?.status, 401);
assert.equal(wrong.data, undefined);

const created = await client.POST("/api/v1/agents", {
  body: { name: "ts-echo", instructions: "Repeat the task.", tags: ["flow"] },
});
assert.equal(created.response.status, 201, JSON.stringify(created.error));
assert.ok(created.data);
const agent = created.data;
assert.match(agent.id, /^agent_/);
assert.equal(agent.name, "ts-echo");
assert.equal(agent.provider, "echo");
assert.deepEqual(agent.tags, ["flow"]);

const listed = await client.GET("/api/v1/agents", { params: { query: { tag: "flow" } } });
assert.equal(listed.response.status, 200, JSON.stringify(listed.error));
assert.deepEqual(
  listed.data?.agents.map((a) => a.id),
  [agent.id],
);
const untagged = await client.GET("/api/v1/agents", { params: { query: { tag: "other" } } });
assert.equal(untagged.response.status, 200, JSON.stringify(untagged.error));
assert.equal(untagged.data?.total, 0);

const started = await client.POST("/api/v1/agents/{agent_id}/execute", {
  params: { path: { agent_id: agent.name } },
  body: { task },
});
assert.equal(started.response.status, 200, JSON.stringify(started.error));
assert.ok(started.data);
const executionId = started.data.execution_id;
assert.match(executionId, /^exec_/);

let execution: Execution | undefined;
for (let attempt = 0; attempt < 600; attempt++) {
  const polled = await client.GET("/api/v1/executions/{execution_id}", {
    params: { path: { execution_id: executionId } },
  });
  assert.equal(polled.response.status, 200, JSON.stringify(polled.error));
  execution = polled.data;
  if (execution && !["queued", "running"].includes(execution.status)) break;
  await sleep(50);
}
assert.ok(execution);
assert.equal(execution.status, "completed");
assert.equal(execution.stop_reason, "completed");
assert.equal(execution.agent_id, agent.id);
assert.equal(execution.result?.["output"], task);
assert.equal(execution.usage.completion_tokens, 2);

const events = await client.GET("/api/v1/executions/{execution_id}/events", {
  params: { path: { execution_id: executionId } },
});
assert.equal(events.response.status, 200, JSON.stringify(events.error));
assert.ok(events.data);
const kinds = events.data.events.map((e) => e.type);
assert.deepEqual(kinds, ["status", "status", "token", "token", "usage", "complete"]);
assert.deepEqual(
  events.data.events.map((e) => e.seq),
  [1, 2, 3, 4, 5, 6],
);
assert.equal(events.data.total, 6);
const streamed = events.data.events.filter((e) => e.type === "token").map((e) => e["content"]);
assert.equal(streamed.join(""), task);
assert.deepEqual(events.data.events.at(-1)?.["result"], execution.result);

const costs = await client.GET("/api/v1/costs", { params: { query: { limit: 10 } } });
assert.equal(costs.response.status, 200, JSON.stringify(costs.error));
assert.ok(costs.data);
assert.equal(costs.data.costs.length, 1);
const [cost] = costs.data.costs;
assert.ok(cost);
assert.equal(cost.execution_id, executionId);
assert.equal(cost.agent_id, agent.id);
assert.equal(cost.provider, "echo");
assert.equal(cost.completion_tokens, 2);
assert.equal(costs.data.total_cost, 0);

const summary = await client.GET("/api/v1/costs/summary", { params: { query: { period: "day" } } });
assert.equal(summary.response.status, 200, JSON.stringify(summary.error));
assert.equal(summary.data?.period, "day");
assert.deepEqual(Object.keys(summary.data?.by_provider ?? {}), ["echo"]);

console.log(`typescript client flow ok: ${executionId} ${kinds.join(",")}`);
