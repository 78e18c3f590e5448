/**
 * The error the simulator throws when a property breaks.
 *
 * @module
 */

/** A broken property; the run stops at the first one. */
export class SimViolation extends Error {
  readonly property: string;
  constructor(property: string, detail: string) {
    super(`${property}: ${detail}`);
    this.name = "SimViolation";
    this.property = property;
  }
}
