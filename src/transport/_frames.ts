/**
 * Framing shared by the peer transports: Raft messages to one peer become encoded
 * `dlock.v1.RaftBatch` frames (proto/dlock/v1/peer.proto), split by size, with large
 * snapshots in chunks the receiver reassembles. Private to src/transport/.
 *
 * @module
 */
import type { Message, NodeId } from "../raft/types.ts";
import { encodeMessage, type WireMessage } from "./codec.ts";

/** A proto `RaftBatch`. */
export interface WireBatch {
  cluster_id?: string;
  from?: string;
  messages?: WireMessage[];
  snapshot_chunk?: { offset?: number; total_bytes?: number; data?: Uint8Array } | null;
}

const batchBytesTarget = 1024 * 1024;

/** Rough wire size of a message, for batch splitting and queue bounds. */
function estimateBytes(message: Message): number {
  let size = 64 + (message.context?.length ?? 0);
  if (message.entries !== undefined) {
    for (const entry of message.entries) size += 24 + entry.data.byteLength;
  }
  if (message.snapshot !== undefined) size += message.snapshot.data.byteLength;
  return size;
}

/** Joins chunks into one array of `total` bytes. */
export function concat(parts: readonly Uint8Array[], total: number): Uint8Array {
  const result = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.byteLength;
  }
  return result;
}

/** Encodes the queued messages to one peer into frames (encoded RaftBatches). */
export function encodeFrames(
  messages: readonly Message[],
  clusterId: string,
  self: NodeId,
  serialize: (batch: WireBatch) => Uint8Array,
  chunkBytes: number,
  /** Copy each frame into its own buffer (needed to transfer frames to a worker). */
  ownBuffers = false,
): Uint8Array[] {
  const frames: Uint8Array[] = [];
  let batch: WireMessage[] = [];
  let batchBytes = 0;
  const flush = (chunk?: WireBatch["snapshot_chunk"]) => {
    const wire: WireBatch = { cluster_id: clusterId, from: self, messages: batch };
    if (chunk !== undefined) wire.snapshot_chunk = chunk;
    const frame = serialize(wire);
    frames.push(ownBuffers ? new Uint8Array(frame) : frame);
    batch = [];
    batchBytes = 0;
  };
  for (const message of messages) {
    const snapshotBytes = message.snapshot?.data.byteLength ?? 0;
    if (snapshotBytes > chunkBytes && message.snapshot !== undefined) {
      if (batch.length > 0) flush();
      batch.push(encodeMessage(message, true));
      flush();
      const data = message.snapshot.data;
      for (let offset = 0; offset < data.byteLength; offset += chunkBytes) {
        const end = Math.min(offset + chunkBytes, data.byteLength);
        flush({ offset, total_bytes: data.byteLength, data: data.subarray(offset, end) });
      }
      continue;
    }
    const size = estimateBytes(message);
    if (batchBytes + size > batchBytesTarget && batch.length > 0) flush();
    batch.push(encodeMessage(message));
    batchBytes += size;
  }
  if (batch.length > 0) flush();
  return frames;
}
