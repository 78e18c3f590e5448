/**
 * Worker for `deno task sim --workers N`: runs one seed per request and posts the result.
 *
 * @module
 */

import { runSeed, type SimMachineName } from "./simulation.ts";

interface WorkerRequest {
  readonly seed: number;
  readonly steps: number;
  readonly nodes: number | undefined;
  readonly machine: SimMachineName;
}

const scope = self as unknown as {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage: (message: unknown) => void;
};

scope.onmessage = (event) => {
  const { seed, steps, nodes, machine } = event.data;
  scope.postMessage(runSeed(seed, steps, { machine, ...(nodes === undefined ? {} : { nodes }) }));
};
