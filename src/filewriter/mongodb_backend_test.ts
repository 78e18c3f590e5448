import assert from "node:assert/strict";
import { runBackendConformance } from "./backend_conformance.ts";
import { databaseFromUri, MongoFileBackend } from "./mongodb_backend.ts";

const uri = Deno.env.get("DLOCK_TEST_MONGODB_URI");

if (uri === undefined || uri === "") {
  console.log(
    "skipped: no MongoDB (set DLOCK_TEST_MONGODB_URI to run the MongoDB conformance suite)",
  );
  Deno.test({ name: "MongoDB backend conformance", ignore: true, fn: () => {} });
} else {
  Deno.test("MongoDB backend conformance", async (t) => {
    const database = `dlock_test_${crypto.randomUUID().slice(0, 8)}`;
    try {
      await runBackendConformance(t, {
        prefix: "conformance",
        open: (options = {}) => MongoFileBackend.open({ uri, database, ...options }),
      });
    } finally {
      const backend = await MongoFileBackend.open({ uri, database });
      await backend.database.dropDatabase();
      await backend.close();
    }
  });
}

Deno.test("databaseFromUri reads the database from the URI path", () => {
  assert.equal(databaseFromUri("mongodb://localhost:27017/files?replicaSet=rs0"), "files");
  assert.equal(databaseFromUri("mongodb+srv://user:pw@cluster.example.net/db"), "db");
  assert.equal(databaseFromUri("mongodb://a:1,b:2/?w=majority"), null);
  assert.equal(databaseFromUri("mongodb://localhost"), null);
});

Deno.test("MongoDB backend: an unreachable server fails open with a driver error", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const started = performance.now();
  await assert.rejects(
    () =>
      MongoFileBackend.open({ uri: `mongodb://127.0.0.1:${port}/?serverSelectionTimeoutMS=300` }),
    (error: Error) => error.name === "MongoServerSelectionError",
  );
  assert.ok(performance.now() - started < 5_000, "the URI's timeout applies");
});
