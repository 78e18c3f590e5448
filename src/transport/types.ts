/**
 * The transport contract between a server loop and the network. Production uses
 * gRPC streams ({@link ../transport/grpc.ts}); tests and the simulator plug in an
 * in-memory network with the same shape.
 *
 * Delivery is best effort, as Raft expects: messages may be dropped (peer down, queue
 * full), duplicated or delayed. A transport never blocks the caller.
 *
 * @module
 */
import type { Message } from "../raft/types.ts";

/** Called with every batch of messages received from peers, in arrival order. */
export type ReceiveHandler = (messages: readonly Message[]) => void;

/** Moves Raft messages between servers. */
export interface Transport {
  /**
   * Queues `messages` for their `to` servers and returns at once. Messages to the same
   * peer queued in one turn of the event loop travel in one frame.
   */
  send(messages: readonly Message[]): void;
  /** Sets the single handler of received messages (replacing any previous one). */
  onReceive(handler: ReceiveHandler): void;
  /** Stops sending and receiving; pending messages are dropped. */
  close(): Promise<void>;
}
