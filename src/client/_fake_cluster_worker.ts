/**
 * Runs a {@link FakeCluster} in a Worker, so that the client tests never serve and dial
 * HTTP/2 in the same isolate (Deno 2.9.6 can abort in nghttp2 when one isolate does
 * both; see /work/notes/STATUS.md). Test-only; driven by {@link FakeClusterWorker}.
 *
 * @module
 */
import { FakeCluster } from "./_fake_cluster_test_helper.ts";

type Request = { id: number; op: string; args: Record<string, unknown> };

let cluster: FakeCluster | null = null;

/** The worker's global scope, narrowed from the window-typed `self`. */
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<Request>) => void) | null;
  postMessage(message: unknown): void;
};

scope.onmessage = async (event: MessageEvent<Request>) => {
  const { id, op, args } = event.data;
  try {
    let result: unknown = null;
    if (op === "start") {
      cluster = await FakeCluster.start(Number(args.count));
      result = cluster.addresses;
    } else if (cluster === null) {
      throw new Error(`Cannot ${op} as the fake cluster is not started`);
    } else if (op === "set") {
      if (typeof args.leaderIndex === "number") cluster.leaderIndex = args.leaderIndex;
      if (typeof args.answerKeepAlives === "boolean") {
        cluster.answerKeepAlives = args.answerKeepAlives;
      }
      if (typeof args.silent === "boolean") cluster.silent = args.silent;
      if (args.appendError !== undefined) {
        cluster.appendError = args.appendError as FakeCluster["appendError"];
      }
    } else if (op === "moveLeader") {
      cluster.moveLeader(Number(args.index));
    } else if (op === "received") {
      result = cluster.received;
    } else if (op === "cancelled") {
      result = cluster.cancelled;
    } else if (op === "stop") {
      await cluster.stop();
    }
    scope.postMessage({ id, result });
  } catch (error) {
    scope.postMessage({ id, error: String(error) });
  }
};
