/**
 * The drivers of the benchmarked systems.
 *
 * @module
 */
import { DlockDriver } from "./dlock.ts";
import { EtcdDriver } from "./etcd.ts";
import type { SystemDriver, SystemName } from "./types.ts";
import { ZookeeperDriver } from "./zookeeper.ts";

export * from "./types.ts";

/**
 * Creates the driver of `name`; `dlockServers` selects an existing dlock cluster,
 * `dlockCpuProfileDir` profiles the dlock servers the bench starts, `dlockServerArgs` are
 * extra arguments for them.
 */
export function createDriver(
  name: SystemName,
  dlockServers: readonly string[] | null,
  dlockCpuProfileDir: string | null = null,
  dlockServerArgs: readonly string[] = [],
): SystemDriver {
  switch (name) {
    case "dlock":
      return dlockServers === null
        ? new DlockDriver(undefined, dlockCpuProfileDir, dlockServerArgs)
        : new DlockDriver(dlockServers);
    case "etcd":
      return new EtcdDriver();
    case "zookeeper":
      return new ZookeeperDriver();
  }
}
