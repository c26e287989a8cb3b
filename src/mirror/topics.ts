/**
 * Which edge topics a mirror link carries, and what they are called at the central. Pure.
 *
 * Patterns are a literal topic name (`telemetry`) or a prefix ending in one `*` (`sensors.*`;
 * `*` alone is every topic). A topic is mirrored when an include pattern matches it and no
 * exclude pattern does (exclude wins). Internal topics (`__...`) are never mirrored: consumer
 * offsets travel by the group-offset path and `__mirror_checkpoints` stays at home, so `*` skips
 * them and a pattern that names one is refused.
 *
 * Renaming: the target is `prefix + source`. The prefix is a template in which `{cluster}` stands
 * for the edge cluster's id; the default `{cluster}.` sends `telemetry` of cluster `site7` to
 * `site7.telemetry`, and `""` keeps names (one edge cluster per central). A prefix is injective,
 * so two topics of one link never meet in one target; the central refuses a target that is bound
 * to another source (two links with one prefix). A target that breaks the topic name rules (over
 * 249 characters) refuses that topic, named, not the whole link.
 *
 * @example
 *   const m = compileTopicMapping({ include: ["telemetry", "alarms.*"], exclude: ["alarms.test"] }, "site7");
 *   selects(m, "alarms.line2");   // true
 *   targetName(m, "telemetry");    // "site7.telemetry"
 */
import { TributaryError, isTributaryError } from "../errors.ts";
import { validateTopicName } from "../topic-metadata.ts";

export interface TopicMappingConfig {
  include: readonly string[];
  exclude?: readonly string[];
  /** Default `{cluster}.`. */
  targetPrefix?: string;
}

/** A checked mapping: build it with compileTopicMapping. */
export interface TopicMapping {
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  /** The prefix with `{cluster}` filled in. */
  readonly prefix: string;
}

export interface TopicRoute {
  readonly source: string;
  readonly target: string;
}

export const DEFAULT_TARGET_PREFIX = "{cluster}.";
/** Patterns per list: each topic is matched against all of them. */
export const MAX_PATTERNS = 256;
/** Letters, digits, '_' and '-': an id that is also a legal piece of a topic name, and of a metric label. */
const CLUSTER_ID = /^[a-zA-Z0-9_-]{1,64}$/;
const NAME_CHARS = /^[a-zA-Z0-9._-]*$/;
const INTERNAL_PREFIX = "__";

function invalid(message: string): TributaryError {
  return new TributaryError("INVALID_CONFIG", `mirror: ${message}`);
}

export function validateClusterId(id: unknown): asserts id is string {
  if (typeof id !== "string" || !CLUSTER_ID.test(id)) {
    throw invalid(`a cluster id is 1 to 64 letters, digits, '_' and '-', got ${JSON.stringify(id)}`);
  }
}

/** Refuse a pattern that is neither a legal topic name nor a legal prefix followed by one '*'. */
export function validatePattern(pattern: unknown): asserts pattern is string {
  if (typeof pattern !== "string") throw invalid(`a topic pattern must be a string, got ${JSON.stringify(pattern)}`);
  const star = pattern.indexOf("*");
  const stem = star < 0 ? pattern : pattern.slice(0, star);
  if (star >= 0 && star !== pattern.length - 1) throw invalid(`"*" may only end a topic pattern: ${JSON.stringify(pattern)}`);
  if (stem.startsWith(INTERNAL_PREFIX)) throw invalid(`internal topics are not mirrored: ${JSON.stringify(pattern)}`);
  if (star < 0) {
    try {
      validateTopicName(pattern);
    } catch (e) {
      throw isTributaryError(e) ? invalid(`topic pattern ${JSON.stringify(pattern)}: ${e.message}`) : e;
    }
  } else if (!NAME_CHARS.test(stem) || stem.length > 248) {
    throw invalid(`a topic prefix is at most 248 letters, digits, '.', '_' and '-': ${JSON.stringify(pattern)}`);
  }
}

/** True when `pattern` (checked by validatePattern) matches `topic`. Internal topics never match. */
export function matchesPattern(pattern: string, topic: string): boolean {
  if (topic.startsWith(INTERNAL_PREFIX)) return false;
  return pattern.endsWith("*") ? topic.startsWith(pattern.slice(0, -1)) : topic === pattern;
}

function patternList(list: unknown, field: string): string[] {
  if (!Array.isArray(list)) throw invalid(`${field} must be a list of topic patterns`);
  if (list.length > MAX_PATTERNS) throw invalid(`${field} holds ${list.length} patterns, at most ${MAX_PATTERNS}`);
  for (const p of list) validatePattern(p);
  return [...(list as string[])];
}

/** Check a link's topic settings; INVALID_CONFIG naming the field when they do not hold. */
export function compileTopicMapping(config: TopicMappingConfig, clusterId: string): TopicMapping {
  validateClusterId(clusterId);
  const include = patternList(config.include, "include");
  if (include.length === 0) throw invalid("include needs at least one topic pattern");
  const exclude = patternList(config.exclude ?? [], "exclude");
  const template = config.targetPrefix ?? DEFAULT_TARGET_PREFIX;
  if (typeof template !== "string") throw invalid(`targetPrefix must be a string, got ${JSON.stringify(template)}`);
  const prefix = template.replaceAll("{cluster}", clusterId);
  if (!NAME_CHARS.test(prefix) || prefix.length > 200) {
    throw invalid(`targetPrefix must become at most 200 letters, digits, '.', '_' and '-' ({cluster} is the cluster id): ${JSON.stringify(template)}`);
  }
  if (prefix.startsWith(INTERNAL_PREFIX)) throw invalid(`targetPrefix would make internal topics: ${JSON.stringify(template)}`);
  return { include, exclude, prefix };
}

export function selects(m: TopicMapping, topic: string): boolean {
  return m.include.some((p) => matchesPattern(p, topic)) && !m.exclude.some((p) => matchesPattern(p, topic));
}

/** The central topic for `topic`; INVALID_TOPIC_NAME when prefix + name breaks the name rules. */
export function targetName(m: TopicMapping, topic: string): string {
  const target = m.prefix + topic;
  validateTopicName(target);
  return target;
}

/** Route the selected ones of `topics` (sorted by source name); topics whose target is illegal are refused, with why. */
export function routeTopics(m: TopicMapping, topics: readonly string[]): { routes: TopicRoute[]; refused: { topic: string; message: string }[] } {
  const routes: TopicRoute[] = [];
  const refused: { topic: string; message: string }[] = [];
  for (const source of [...new Set(topics)].sort()) {
    if (!selects(m, source)) continue;
    try {
      routes.push({ source, target: targetName(m, source) });
    } catch (e) {
      if (!isTributaryError(e)) throw e;
      refused.push({ topic: source, message: e.message });
    }
  }
  return { routes, refused };
}
