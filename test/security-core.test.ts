/** The pure security core as tables: ACL evaluation and parsing, token hashing, exposure rules. */
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../src/errors.ts";
import { GRPC_STATUS } from "../gateways/grpc/errors.ts";
import { HTTP_STATUS } from "../gateways/http/errors.ts";
import { evaluate, parseAcl, type Operation, type Resource } from "../src/security/acl.ts";
import { exposureVerdict } from "../src/security/exposure.ts";
import { EMPTY_TOKEN_FILE, newToken, parseTokenFile, revoke, splitToken, verifyToken } from "../src/security/tokens.ts";

const acl = parseAcl({
  acls: [
    { principal: "gw", resource: "topic:telemetry-*", operations: ["produce", "describe"] },
    { principal: "an", resource: "topic:telemetry-site1", operations: ["consume"] },
    { principal: "an", resource: "group:an-*", operations: ["group"] },
    { principal: "ops", resource: "cluster", operations: ["describe"] },
    { principal: "*", resource: "topic:public", operations: ["consume"] },
    { principal: "root", resource: "*", operations: ["admin"] },
  ],
});

const T = (name: string): Resource => ({ kind: "topic", name });
const G = (name: string): Resource => ({ kind: "group", name });
const C: Resource = { kind: "cluster" };

describe("ACL evaluation", () => {
  it.each<[string, Operation, Resource, boolean]>([
    ["gw", "produce", T("telemetry-a"), true],
    ["gw", "produce", T("telemetry-"), true],
    ["gw", "produce", T("telemetry"), false], // the prefix is "telemetry-"
    ["gw", "consume", T("telemetry-a"), false],
    ["gw", "describe", T("telemetry-a"), true],
    ["gw", "produce", G("telemetry-a"), false], // a topic pattern never matches a group
    ["an", "consume", T("telemetry-site1"), true],
    ["an", "consume", T("telemetry-site10"), false], // literal: exact name only
    ["an", "group", G("an-1"), true],
    ["an", "delete", G("an-1"), false],
    ["ops", "describe", C, true],
    ["ops", "describe", T("x"), false],
    ["gw", "describe", C, false],
    ["nobody", "consume", T("public"), true], // "*": every authenticated principal
    ["nobody", "produce", T("public"), false],
    ["root", "delete", T("anything"), true], // admin implies every operation
    ["root", "mirror", C, true],
    ["stranger", "describe", C, false], // deny by default
  ])("%s %s %o -> %s", (principal, op, resource, allowed) => {
    const d = evaluate(acl, principal, op, resource);
    expect(d.allowed).toBe(allowed);
    if (!allowed) expect(d.reason).toContain(`principal ${principal} may not ${op}`);
  });

  it.each<[unknown, RegExp]>([
    [[], /expected \{"acls"/],
    [{ acls: [{ principal: "a", resource: "topic:x", operations: ["write"] }] }, /unknown operation "write"/],
    [{ acls: [{ principal: "a", resource: "queue:x", operations: ["produce"] }] }, /acls\[0\]\.resource/],
    [{ acls: [{ principal: "a", resource: "topic:a*b", operations: ["produce"] }] }, /may only end a pattern/],
    [{ acls: [{ principal: "", resource: "cluster", operations: ["describe"] }] }, /principal must be/],
    [{ acls: [{ principal: "a", resource: "cluster", operations: [] }] }, /non-empty list/],
    [{ acls: [], extra: 1 }, /unknown field extra/],
  ])("refuses a bad ACL file %j", (json, message) => {
    expect(() => parseAcl(json)).toThrow(message);
  });
});

describe("tokens", () => {
  it("verifies a token against its salted hash, and only that token", async () => {
    const a = await newToken("alice", 1);
    const b = await newToken("alice", 2);
    expect(a.entry.hash).not.toBe(b.entry.hash);
    expect(a.entry.salt).not.toBe(b.entry.salt);
    // The file holds no secret: neither the token nor its secret part appears in it.
    const stored = JSON.stringify(a.entry);
    expect(stored).not.toContain(a.token);
    expect(stored).not.toContain(splitToken(a.token)!.secret);
    const file = { version: 1 as const, tokens: [a.entry, b.entry] };
    expect((await verifyToken(file, a.token)).verdict).toBe("ok");
    expect((await verifyToken(file, b.token)).entry?.id).toBe(b.entry.id);
    // Same id, another secret: wrong.
    const forged = `trb_${a.entry.id}_${splitToken(b.token)!.secret}`;
    expect((await verifyToken(file, forged)).verdict).toBe("unknown");
    expect((await verifyToken(EMPTY_TOKEN_FILE, a.token)).verdict).toBe("unknown");
    expect((await verifyToken(file, "hunter2")).verdict).toBe("malformed");
  });

  it("revokes by name or id, and a revoked token says so", async () => {
    const a = await newToken("alice", 1);
    const b = await newToken("bob", 1);
    let file = parseTokenFile(JSON.parse(JSON.stringify({ version: 1, tokens: [a.entry, b.entry] })));
    const r = revoke(file, "alice", 5);
    expect(r.revoked).toBe(1);
    file = r.file;
    expect((await verifyToken(file, a.token)).verdict).toBe("revoked");
    expect((await verifyToken(file, b.token)).verdict).toBe("ok");
    expect(revoke(file, "alice", 6).revoked).toBe(0);
    expect(revoke(file, b.entry.id, 6).revoked).toBe(1);
  });

  it("refuses bad names", async () => {
    await expect(newToken("has space", 1)).rejects.toThrow(/token name/);
    await expect(newToken("", 1)).rejects.toThrow(/token name/);
  });
});

describe("exposure (secure by default)", () => {
  it.each([
    [{ httpHost: "127.0.0.1", grpcHost: "127.0.0.1", authOn: false, insecure: false }, "note", /loopback only/],
    [{ httpHost: "::1", grpcHost: "localhost", authOn: false, insecure: false }, "note", /loopback only/],
    [{ httpHost: "0.0.0.0", grpcHost: "127.0.0.1", authOn: false, insecure: false }, "error", /http.host 0.0.0.0 is not loopback/],
    [{ httpHost: "127.0.0.1", grpcHost: "10.0.0.5", authOn: false, insecure: false }, "error", /grpc.host 10.0.0.5/],
    [{ httpHost: "127.evil.com", grpcHost: "127.0.0.1", authOn: false, insecure: false }, "error", /not loopback/],
    [{ httpHost: "0.0.0.0", grpcHost: "0.0.0.0", authOn: false, insecure: true }, "warning", /INSECURE/],
    [{ httpHost: "0.0.0.0", grpcHost: "0.0.0.0", authOn: true, insecure: false }, "note", /authentication is on/],
  ] as const)("%o -> %s", (e, kind, message) => {
    const v = exposureVerdict(e);
    expect(Object.keys(v)).toEqual([kind]);
    expect(v[kind]).toMatch(message);
  });
});

describe("security error codes in the gateway tables", () => {
  it("maps UNAUTHENTICATED and PERMISSION_DENIED to 401/403 and their gRPC statuses", () => {
    expect(ERROR_CODES).toContain("UNAUTHENTICATED");
    expect(ERROR_CODES).toContain("PERMISSION_DENIED");
    expect(HTTP_STATUS.UNAUTHENTICATED).toBe(401);
    expect(HTTP_STATUS.PERMISSION_DENIED).toBe(403);
    expect(GRPC_STATUS.UNAUTHENTICATED).toBe(status.UNAUTHENTICATED);
    expect(GRPC_STATUS.PERMISSION_DENIED).toBe(status.PERMISSION_DENIED);
  });
});
