/**
 * The security guard every gateway calls at its edge: who is calling (authentication, from a
 * bearer token) and may they do this (authorization, from the ACL). The broker itself knows
 * nothing of principals; each gateway asks the guard once per request (HTTP: a middleware; gRPC:
 * the bridge's wrapper; MQTT: the bridge's principal before each produce).
 *
 * The token and ACL files are re-read when they change, without a restart: before authenticating,
 * at most once every `reloadCheckMs` (1 s), the guard compares each file's size, mtime and inode
 * with what it last read. A file that no longer parses is logged and the previous contents stay in
 * force, so a half-edited ACL never opens or closes everything at once.
 *
 * Refusals are TributaryErrors (UNAUTHENTICATED, PERMISSION_DENIED) whose messages never hold a
 * token, and are counted in `tributary_auth_refusals_total{listener,reason}`.
 *
 * @example
 *   const guard = await SecurityGuard.open({ tokensFile, aclFile, metrics, logger });
 *   const principal = await guard.check("http", req.headers.get("authorization"), [{ operation: "produce", resource: { kind: "topic", name: "t" } }]);
 */
import { createHash } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { TributaryError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import type { Counter, Metrics } from "../metrics.ts";
import { EMPTY_ACL, evaluate, parseAcl, type Acl, type Decision, type Operation, type Resource } from "./acl.ts";
import type { ConnectionProbe } from "./connections.ts";
import { QuotaEnforcer } from "./quotas.ts";
import { systemClock, type Clock } from "../runtime/clock.ts";
import { procNetTcpProbe } from "../runtime/tcp-connections.ts";
import { EMPTY_TOKEN_FILE, parseTokenFile, verifyToken, type TokenFile } from "./tokens.ts";

export type RefusalReason = "missing" | "malformed" | "unknown" | "revoked" | "denied";

export interface Check {
  operation: Operation;
  resource: Resource;
}

export const CLUSTER: Resource = { kind: "cluster" };
export const topic = (name: string): Resource => ({ kind: "topic", name });
export const group = (name: string): Resource => ({ kind: "group", name });

export interface GuardOptions {
  tokensFile: string;
  /** "" : no ACL file, so every authenticated request is denied. */
  aclFile: string;
  metrics: Metrics;
  logger: Logger;
  reloadCheckMs?: number;
  /** Time for quota buckets (quotas.ts); the system clock unless a test gives one. */
  clock?: Clock;
  /** Which connections are still open, for maxConnections; /proc/net/tcp unless a test gives one. */
  connectionProbe?: ConnectionProbe;
}

/** Verified tokens, by the SHA-256 of the whole token, so a request does not pay scrypt each time. */
const VERIFIED_CACHE_MAX = 1024;

/** A JSON file re-read when its size, mtime or inode change. */
class WatchedFile<T> {
  private version = "";
  constructor(
    readonly path: string,
    private readonly parse: (json: unknown) => T,
    public value: T,
  ) {}

  /** Re-read if changed; true when the value was replaced. Throws when the new text is bad. */
  async refresh(missing: T | null): Promise<boolean> {
    let version: string;
    try {
      const s = await stat(this.path);
      version = `${s.size}:${s.mtimeMs}:${s.ino}`;
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT" || missing === null) throw e;
      version = "missing";
      if (version === this.version) return false;
      this.version = version;
      this.value = missing;
      return true;
    }
    if (version === this.version) return false;
    const text = await readFile(this.path, "utf8");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new TributaryError("INVALID_CONFIG", `${this.path} is not valid JSON: ${(e as Error).message}`);
    }
    this.value = this.parse(json);
    this.version = version;
    return true;
  }
}

export class SecurityGuard {
  private readonly refusals: Counter;
  private readonly verified = new Map<string, string>();
  private nextCheckMs = 0;
  private reloading: Promise<void> | null = null;
  /** Per-principal quotas from the ACL file's `quotas` section, shared by every listener. */
  readonly quotas: QuotaEnforcer;

  private constructor(
    private readonly tokens: WatchedFile<TokenFile>,
    private readonly acl: WatchedFile<Acl> | null,
    private readonly options: GuardOptions,
  ) {
    this.quotas = new QuotaEnforcer(() => this.acl?.value.quotas ?? [], options.metrics, options.clock ?? systemClock, { connectionProbe: options.connectionProbe ?? procNetTcpProbe });
    this.refusals = options.metrics.counter("tributary_auth_refusals_total", "Requests refused by authentication or authorization, by listener and reason", ["listener", "reason"]);
  }

  /** Read both files; a missing token file means no tokens yet (bootstrap with `tributary token create`). */
  static async open(options: GuardOptions): Promise<SecurityGuard> {
    const tokens = new WatchedFile(options.tokensFile, parseTokenFile, EMPTY_TOKEN_FILE);
    const acl = options.aclFile ? new WatchedFile(options.aclFile, parseAcl, EMPTY_ACL) : null;
    await tokens.refresh(EMPTY_TOKEN_FILE);
    // A missing ACL file named in the settings is a mistake worth stopping for.
    await acl?.refresh(null);
    const guard = new SecurityGuard(tokens, acl, options);
    guard.nextCheckMs = Date.now() + (options.reloadCheckMs ?? 1000);
    return guard;
  }

  private async maybeReload(): Promise<void> {
    if (Date.now() < this.nextCheckMs) return;
    this.reloading ??= (async () => {
      try {
        for (const [file, missing] of [
          [this.tokens, EMPTY_TOKEN_FILE],
          [this.acl, EMPTY_ACL],
        ] as const) {
          if (!file) continue;
          try {
            if (await (file as WatchedFile<unknown>).refresh(missing)) {
              this.verified.clear();
              this.options.logger.info("security: reloaded", { file: file.path });
            }
          } catch (e) {
            this.options.logger.error("security: could not reload; the previous contents stay in force", { file: file.path, error: e });
          }
        }
      } finally {
        this.nextCheckMs = Date.now() + (this.options.reloadCheckMs ?? 1000);
        this.reloading = null;
      }
    })();
    await this.reloading;
  }

  private refuse(listener: string, reason: RefusalReason, message: string): TributaryError {
    this.refusals.inc({ listener, reason });
    return new TributaryError(reason === "denied" ? "PERMISSION_DENIED" : "UNAUTHENTICATED", message);
  }

  /**
   * The principal of an `Authorization: Bearer <token>` value; UNAUTHENTICATED otherwise. Under
   * mutual TLS the listener passes the verified client certificate's subject CN as
   * `certificatePrincipal`: a request without a token runs as it (a token, when sent, wins).
   */
  async authenticate(listener: string, authorization: string | null | undefined, certificatePrincipal?: string | null): Promise<string> {
    await this.maybeReload();
    if (!authorization && certificatePrincipal) return certificatePrincipal;
    if (!authorization) throw this.refuse(listener, "missing", "authentication required: send Authorization: Bearer <token>");
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(authorization);
    if (!m) throw this.refuse(listener, "malformed", "the Authorization header must be Bearer <token>");
    const token = m[1]!;
    const digest = createHash("sha256").update(token).digest("hex");
    const cachedId = this.verified.get(digest);
    if (cachedId !== undefined) {
      const entry = this.tokens.value.tokens.find((t) => t.id === cachedId);
      if (entry && entry.revokedAtMs === null) return entry.name;
      this.verified.delete(digest);
    }
    const { verdict, entry } = await verifyToken(this.tokens.value, token);
    if (verdict === "malformed") throw this.refuse(listener, "malformed", "the bearer token is not a Tributary token");
    if (verdict === "unknown") throw this.refuse(listener, "unknown", "the bearer token is not valid");
    if (verdict === "revoked") throw this.refuse(listener, "revoked", "the bearer token has been revoked");
    if (this.verified.size >= VERIFIED_CACHE_MAX) this.verified.clear();
    this.verified.set(digest, entry!.id);
    return entry!.name;
  }

  decide(principal: string, operation: Operation, resource: Resource): Decision {
    return evaluate(this.acl?.value ?? EMPTY_ACL, principal, operation, resource);
  }

  /** PERMISSION_DENIED at the first check the principal fails. */
  authorize(listener: string, principal: string, checks: readonly Check[]): void {
    for (const c of checks) {
      const d = this.decide(principal, c.operation, c.resource);
      if (!d.allowed) throw this.refuse(listener, "denied", d.reason);
    }
  }

  async check(listener: string, authorization: string | null | undefined, checks: readonly Check[]): Promise<string> {
    const principal = await this.authenticate(listener, authorization);
    this.authorize(listener, principal, checks);
    return principal;
  }

  /** Count a refusal made elsewhere on the guard's behalf (the MQTT bridge's dropped records). */
  countDenied(listener: string): void {
    this.refusals.inc({ listener, reason: "denied" });
  }
}
