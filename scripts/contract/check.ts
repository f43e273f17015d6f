// A user of another language: a client generated from GET /openapi.yaml (openapi-typescript),
// called through openapi-fetch, type-checked by tsc --strict. It sends, batches, reads history
// and deletes, and checks each answer; exit 1 on the first that is not what the document says.
import createClient from "openapi-fetch";
import type { paths } from "./chatpipe";

const api = createClient<paths>({ baseUrl: process.env.CHATPIPE_URL ?? "http://127.0.0.1:8080" });
const channel = `contract-${Date.now()}`;

function check(ok: boolean, what: string, got: unknown): void {
  if (!ok) throw new Error(`${what}: got ${JSON.stringify(got)}`);
  console.log(`  ok: ${what}`);
}

async function main() {
  const sent = await api.POST("/v1/channels/{channel}/messages", {
    params: { path: { channel } },
    body: { owner_id: "alice", username: "Alice", content: "hello from TypeScript", client_msg_id: `${channel}-1` },
  });
  check(sent.response.status === 202 && !!sent.data && sent.data.cache_id > 0, "send: 202 with a cache_id", sent.data ?? sent.error);
  const id = sent.data!.cache_id;
  const again = await api.POST("/v1/channels/{channel}/messages", {
    params: { path: { channel } },
    body: { owner_id: "alice", username: "Alice", content: "hello from TypeScript", client_msg_id: `${channel}-1` },
  });
  check(again.data?.cache_id === id && again.data?.duplicate === true, "a retry with the same client_msg_id: the same id, duplicate", again.data);
  const batch = await api.POST("/v1/messages/batch", {
    body: { messages: [{ owner_id: "bob", content: "from a batch", channel_id: channel }, { owner_id: "bob", content: "" }] },
  });
  const results = batch.data?.results ?? [];
  check(batch.response.status === 200 && "cache_id" in results[0] && "error" in results[1], "batch: per-item results", results);
  const history = await api.GET("/v1/channels/{channel}/messages/history", { params: { path: { channel }, query: { limit: 10 } } });
  const contents = history.data?.messages.map((m) => m.data.content) ?? [];
  check(contents.join("|") === "hello from TypeScript|from a batch", "history: both messages, oldest first", contents);
  const del = await api.DELETE("/v1/channels/{channel}/messages/{cache_id}", { params: { path: { channel, cache_id: id } } });
  check(del.response.status === 204, "delete: 204", del.response.status);
  const gone = await api.DELETE("/v1/channels/{channel}/messages/{cache_id}", { params: { path: { channel: "elsewhere", cache_id: id } } });
  check(gone.response.status === 404 && gone.error?.error === "not_found", "delete through another channel: 404 not_found", gone.error);
  const after = await api.GET("/v1/channels/{channel}/messages/history", { params: { path: { channel }, query: { limit: 10 } } });
  check(!after.data?.messages.some((m) => m.cache_id === id), "history after the delete: without it", after.data);
}
main().catch((e) => {
  console.error(`contract: ${e.message}`);
  process.exit(1);
});
