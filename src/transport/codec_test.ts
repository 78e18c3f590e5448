import assert from "node:assert/strict";
import type { Message } from "../raft/types.ts";
import { decodeMessage, encodeMessage } from "./codec.ts";
import { loadService } from "./proto.ts";

const method = loadService("peer.proto", "Peer")["Send"]!;
const roundTrip = (message: Message): Message => {
  const bytes = method.requestSerialize({
    cluster_id: "c",
    from: message.from,
    messages: [encodeMessage(message)],
  });
  const batch = method.requestDeserialize(bytes) as { messages: unknown[] };
  return decodeMessage(batch.messages[0] as never);
};

Deno.test("transport codec: every message shape survives the protobuf round trip exactly", () => {
  const messages: Message[] = [
    { type: "preVote", from: "a:1", to: "b:2", term: 7, index: 10, logTerm: 6 },
    { type: "vote", from: "a:1", to: "b:2", term: 7, index: 0, logTerm: 0, context: "transfer" },
    { type: "voteResp", from: "b:2", to: "a:1", term: 7, reject: false },
    {
      type: "append",
      from: "a:1",
      to: "b:2",
      term: 7,
      index: 9,
      logTerm: 6,
      commit: 8,
      entries: [
        { term: 7, index: 10, kind: "noop", data: new Uint8Array(0) },
        { term: 7, index: 11, kind: "normal", data: new Uint8Array([0, 1, 255]) },
        { term: 7, index: 12, kind: "config", data: new Uint8Array([9]) },
      ],
    },
    {
      type: "append",
      from: "a:1",
      to: "b:2",
      term: 7,
      index: 12,
      logTerm: 7,
      commit: 12,
      entries: [],
    },
    {
      type: "appendResp",
      from: "b:2",
      to: "a:1",
      term: 7,
      index: 3,
      reject: true,
      rejectHint: 2,
      logTerm: 0,
    },
    { type: "heartbeat", from: "a:1", to: "b:2", term: 7, commit: 12, context: "r42" },
    { type: "heartbeatResp", from: "b:2", to: "a:1", term: 7, context: "" },
    {
      type: "snapshot",
      from: "a:1",
      to: "b:2",
      term: 7,
      snapshot: {
        meta: { index: 100, term: 6, voters: ["a:1", "b:2", "c:3"] },
        data: new Uint8Array([5, 6]),
      },
    },
    { type: "timeoutNow", from: "a:1", to: "b:2", term: 7 },
    { type: "readIndex", from: "b:2", to: "a:1", term: 0, context: "req-1" },
    {
      type: "readIndexResp",
      from: "a:1",
      to: "b:2",
      term: 7,
      context: "req-1",
      index: 12,
      reject: false,
    },
  ];
  for (const message of messages) assert.deepEqual(roundTrip(message), message);
});
