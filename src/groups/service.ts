/**
 * `GroupService`: consumer groups as the gateways see them, every call asynchronous. On a single
 * node it is the coordinator itself; in a cluster only one peer coordinates (the leader of
 * `__consumer_offsets`, once it has replayed the offsets), and every other peer forwards group
 * calls to it, so a consumer may talk to any peer. A forwarded call that meets a coordinator
 * moving (an election, a replay) is retried until the request timeout.
 *
 * @example
 *   const { memberId, assignment } = await broker.groups.heartbeat({ groupId: "g", topics: ["t"] });
 */
import type { GroupCoordinator } from "./coordinator.ts";

/** The coordinator's calls that the gateways make; the forwarding is by method name. */
export const GROUP_METHODS = [
  "heartbeat",
  "leave",
  "commitOffsets",
  "fetchCommittedOffsets",
  "startOffset",
  "listGroups",
  "describeGroup",
  "resetOffsets",
  "deleteGroup",
] as const;
export type GroupMethod = (typeof GROUP_METHODS)[number];

type Async<F> = F extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;

export type GroupService = { [M in GroupMethod]: Async<GroupCoordinator[M]> } & {
  /** A session timeout clamped to the broker's bounds (a local setting: never forwarded). */
  sessionTimeout(ms: number | undefined): number;
};

/** Run `method` with `args` on the coordinator that answers here, or forward it. */
export type GroupRoute = (method: GroupMethod, args: unknown[]) => Promise<unknown>;

export function groupService(coordinator: GroupCoordinator, route: GroupRoute): GroupService {
  const service = { sessionTimeout: (ms: number | undefined) => coordinator.sessionTimeout(ms) } as Record<string, unknown>;
  for (const m of GROUP_METHODS) service[m] = (...args: unknown[]) => route(m, args);
  return service as GroupService;
}

/** Call a method on the local coordinator by name (a route's local branch, and the forwarded calls' handler). */
export async function callLocal(coordinator: GroupCoordinator, method: GroupMethod, args: unknown[]): Promise<unknown> {
  if (!(GROUP_METHODS as readonly string[]).includes(method)) throw new Error(`invariant broken: ${method} is not a group method`);
  const fn = coordinator[method] as (...a: unknown[]) => unknown;
  return fn.apply(coordinator, args);
}
