/**
 * Access control lists: which principal may do which operation on which resource. Pure: no
 * files, no clocks; `evaluate` answers allow or deny with a reason a person can read.
 *
 * The ACL file (JSON; `auth.acl.file`) holds allow rules only. Nothing is allowed that no rule
 * allows (deny by default):
 *
 *   { "acls": [
 *       { "principal": "sensor-gw", "resource": "topic:telemetry-*", "operations": ["produce", "describe"] },
 *       { "principal": "analytics", "resource": "topic:telemetry-*", "operations": ["consume"] },
 *       { "principal": "analytics", "resource": "group:analytics-*", "operations": ["group", "describe"] },
 *       { "principal": "ops",       "resource": "cluster",           "operations": ["describe"] },
 *       { "principal": "root",      "resource": "*",                 "operations": ["admin"] } ] }
 *
 * Resources are `cluster`, `topic:<pattern>` or `group:<pattern>`; `*` alone matches every
 * resource. A pattern is literal, or ends in `*` to match every name with that prefix
 * (`telemetry-*`, `*`). `principal` is a token name, or `*` for every authenticated principal.
 * `admin` grants every operation on the resources the rule matches.
 *
 * @example
 *   const acl = parseAcl(JSON.parse(text));
 *   evaluate(acl, "sensor-gw", "produce", { kind: "topic", name: "telemetry-site1" }); // { allowed: true, ... }
 */
import { TributaryError } from "../errors.ts";
import { parseQuotas, type QuotaRule } from "./quotas.ts";

export const OPERATIONS = ["produce", "consume", "create", "delete", "describe", "group", "admin", "mirror"] as const;
export type Operation = (typeof OPERATIONS)[number];

export type Resource = { kind: "cluster" } | { kind: "topic"; name: string } | { kind: "group"; name: string };

export interface AclRule {
  principal: string;
  /** "cluster", "*", or kind + pattern. */
  resource: { kind: "cluster" } | { kind: "any" } | { kind: "topic" | "group"; pattern: string };
  operations: readonly Operation[];
}

export interface Acl {
  rules: readonly AclRule[];
  /** Per-principal quotas (quotas.ts); absent: none. */
  quotas?: readonly QuotaRule[];
}

export interface Decision {
  allowed: boolean;
  /** Why, for the refusal message and the log: never holds a secret. */
  reason: string;
}

/** The whole resource a check is about, as people write it: topic:telemetry, group:g, cluster. */
export function resourceText(r: Resource): string {
  return r.kind === "cluster" ? "cluster" : `${r.kind}:${r.name}`;
}

function patternMatches(pattern: string, name: string): boolean {
  return pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : pattern === name;
}

function ruleMatches(rule: AclRule, principal: string, operation: Operation, resource: Resource): boolean {
  if (rule.principal !== "*" && rule.principal !== principal) return false;
  if (!rule.operations.includes(operation) && !rule.operations.includes("admin")) return false;
  const r = rule.resource;
  if (r.kind === "any") return true;
  if (r.kind === "cluster") return resource.kind === "cluster";
  return resource.kind === r.kind && patternMatches(r.pattern, resource.name);
}

/** Allow when some rule grants `operation` on `resource` to `principal`; deny otherwise. */
export function evaluate(acl: Acl, principal: string, operation: Operation, resource: Resource): Decision {
  const rule = acl.rules.find((r) => ruleMatches(r, principal, operation, resource));
  if (rule) return { allowed: true, reason: `allowed by the rule for ${rule.principal} on ${ruleResourceText(rule)}` };
  return { allowed: false, reason: `principal ${principal} may not ${operation} ${resourceText(resource)}: no ACL rule allows it` };
}

function ruleResourceText(rule: AclRule): string {
  const r = rule.resource;
  return r.kind === "any" ? "*" : r.kind === "cluster" ? "cluster" : `${r.kind}:${r.pattern}`;
}

/** No rules at all: every check is denied (auth on, no ACL file yet). */
export const EMPTY_ACL: Acl = { rules: [] };

/** Check the parsed JSON of an ACL file; anything off is INVALID_CONFIG naming the rule. */
export function parseAcl(json: unknown): Acl {
  const bad = (why: string) => new TributaryError("INVALID_CONFIG", `ACL file: ${why}`);
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw bad(`expected {"acls": [...]}`);
  const top = json as Record<string, unknown>;
  for (const k of Object.keys(top)) if (k !== "acls" && k !== "quotas") throw bad(`unknown field ${k}`);
  if (!Array.isArray(top.acls)) throw bad(`acls must be a list of rules`);
  const rules = top.acls.map((raw: unknown, i): AclRule => {
    const where = `acls[${i}]`;
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw bad(`${where} must be an object`);
    const o = raw as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!["principal", "resource", "operations"].includes(k)) throw bad(`${where}: unknown field ${k}`);
    if (typeof o.principal !== "string" || o.principal === "") throw bad(`${where}.principal must be a non-empty string`);
    if (typeof o.resource !== "string") throw bad(`${where}.resource must be "cluster", "*", "topic:<pattern>" or "group:<pattern>"`);
    if (!Array.isArray(o.operations) || o.operations.length === 0) throw bad(`${where}.operations must be a non-empty list`);
    for (const op of o.operations) {
      if (!(OPERATIONS as readonly unknown[]).includes(op)) throw bad(`${where}: unknown operation ${JSON.stringify(op)} (known: ${OPERATIONS.join(", ")})`);
    }
    return { principal: o.principal, resource: parseResource(o.resource, where, bad), operations: o.operations as Operation[] };
  });
  return top.quotas === undefined ? { rules } : { rules, quotas: parseQuotas(top.quotas) };
}

function parseResource(text: string, where: string, bad: (why: string) => Error): AclRule["resource"] {
  if (text === "cluster") return { kind: "cluster" };
  if (text === "*") return { kind: "any" };
  const colon = text.indexOf(":");
  const kind = text.slice(0, colon);
  const pattern = text.slice(colon + 1);
  if (colon < 0 || (kind !== "topic" && kind !== "group") || pattern === "") throw bad(`${where}.resource ${JSON.stringify(text)} must be "cluster", "*", "topic:<pattern>" or "group:<pattern>"`);
  if (pattern.indexOf("*") >= 0 && pattern.indexOf("*") !== pattern.length - 1) throw bad(`${where}.resource: * may only end a pattern (a prefix match)`);
  return { kind, pattern };
}
