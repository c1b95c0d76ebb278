import { type Condition, compileConditions, parseCondition, RuleValidationError } from '@meshlet/core';
import { type NoticeSink, tsfField } from './tsf-fields.js';
import { TsfFieldError } from './tsf-rule-error.js';

/** TSF's tag operators (polaris-java connector-consul TagConstant.OPERATOR) and the core operator each becomes. */
export const TSF_OPERATORS = { EQUAL: 'equals', NOT_EQUAL: 'notEquals', IN: 'in', NOT_IN: 'notIn', REGEX: 'regex' } as const;
export type TsfOperator = keyof typeof TSF_OPERATORS;

/** TSF's tag types: `S` system field, `U` user tag (TagConstant.TYPE). */
export const TSF_TAG_TYPES = ['S', 'U'] as const;

/** TSF's system tag fields (polaris-java connector-consul TagConstant.SYSTEM_FIELD). */
export const TsfSystemField = {
  sourceApplicationId: 'source.application.id',
  sourceApplicationVersion: 'source.application.version',
  sourceInstanceId: 'source.instance.id',
  sourceGroupId: 'source.group.id',
  sourceConnectionIp: 'source.connection.ip',
  sourceServiceName: 'source.service.name',
  sourceNamespaceServiceName: 'source.namespace.service.name',
  sourceServiceToken: 'source.service.token',
  sourceInterface: 'source.interface',
  destinationServiceName: 'destination.service.name',
  destinationInterface: 'destination.interface',
  destinationApplicationId: 'destination.application.id',
  destinationApplicationVersion: 'destination.application.version',
  destinationGroupId: 'destination.group.id',
  requestHttpMethod: 'request.http.method',
} as const;

/**
 * Tags a TSF rule on an outbound call reads that describe the call itself, not the
 * inbound request: the API path and HTTP method of the call being routed. The SDK's
 * routing lookup must answer them (see the README: the governed-fetch hook).
 */
export const TsfCallTag = {
  interface: 'destination.interface',
  httpMethod: 'request.http.method',
} as const;

/**
 * This process as TSF describes it. On an outbound call TSF's `source.*` fields are the
 * caller itself, so a route or breaker rule's source conditions are decided once, at
 * conversion, against this identity (as tsf-go reads them from its own metadata).
 */
export interface TsfLocalIdentity {
  readonly serviceName: string;
  readonly namespaceId: string;
  readonly applicationId?: string;
  readonly applicationVersion?: string;
  readonly groupId?: string;
  readonly instanceId?: string;
  readonly localIp?: string;
}

/**
 * Which side of a call a rule governs. `inbound` (rate limit, authority): the request
 * arriving here, whose caller sent `tsf-metadata` (the propagation package lifts it into
 * tags named as TSF's source fields). `outbound` (route, circuit breaker): a call this
 * process makes to `destination`.
 */
export type RuleSide = { readonly side: 'inbound' } | { readonly side: 'outbound'; readonly destination: string };

export interface TagListContext {
  readonly side: RuleSide;
  readonly local: TsfLocalIdentity;
  readonly notice: NoticeSink;
  /** Extra keys a tag entry of this kind carries (route tags carry `routeRuleId`). */
  readonly ignoredKeys?: readonly string[];
}

/** A converted tag list: core conditions, or `never` when a condition decided at conversion is false. */
export interface ConvertedTags {
  readonly when: readonly Condition[];
  readonly never?: string;
}

const TAG_KEYS = ['tagType', 'tagField', 'tagOperator', 'tagValue'];
const TAG_BOOKKEEPING = ['tagId', 'tagID', 'tagName', 'createTime', 'updateTime'];

/**
 * Converts a TSF tag list (ANDed, as TSF combines them) into core conditions. A
 * condition on a tag the request lacks is false, whatever the operator — core's rule and
 * TSF's (tsf-go tag.Hit returns false for a missing value).
 */
export function convertTagList(raw: unknown, path: string, ctx: TagListContext): ConvertedTags {
  const list = tsfField.optionalList(raw, path);
  const when: Condition[] = [];
  let never: string | undefined;
  list.forEach((item, i) => {
    const p = `${path}[${i}]`;
    const obj = tsfField.object(item, p);
    tsfField.reportUnknown(obj, p, TAG_KEYS, [...TAG_BOOKKEEPING, ...(ctx.ignoredKeys ?? [])], ctx.notice);
    const type = tsfField.text(obj.tagType, `${p}.tagType`);
    if (!(TSF_TAG_TYPES as readonly string[]).includes(type)) throw new TsfFieldError(`${p}.tagType`, `must be "S" or "U" (got "${type}")`);
    const field = tsfField.text(obj.tagField, `${p}.tagField`);
    if (field.length === 0) throw new TsfFieldError(`${p}.tagField`, 'must not be empty');
    const operator = tsfField.text(obj.tagOperator, `${p}.tagOperator`);
    if (!Object.hasOwn(TSF_OPERATORS, operator)) {
      throw new TsfFieldError(`${p}.tagOperator`, `must be one of ${Object.keys(TSF_OPERATORS).join(', ')} (got "${operator}")`);
    }
    const value = tsfField.text(obj.tagValue, `${p}.tagValue`);
    const target = type === 'U' ? { tag: field } : systemTarget(field, ctx, p);
    const condition = coreCondition(target.tag, operator as TsfOperator, value, `${p}.tagValue`);
    if ('value' in target) {
      // Decided now: the field is this process (or the destination) itself.
      const local = target.value;
      const holds = compileConditions([condition])((t) => (t === condition.tag ? local : undefined));
      if (!holds) never ??= `${p}: ${field} ${operator} "${value}" is false for ${describe(field, local)}`;
      return;
    }
    when.push(condition);
  });
  return never === undefined ? { when } : { when, never };
}

function describe(field: string, value: string | undefined): string {
  return value === undefined ? `this process (it has no ${field})` : `this process (${field} = "${value}")`;
}

type Target = { readonly tag: string } | { readonly tag: string; readonly value: string | undefined };

function systemTarget(field: string, ctx: TagListContext, path: string): Target {
  const { side, local } = ctx;
  const F = TsfSystemField;
  if (side.side === 'outbound') {
    switch (field) {
      case F.sourceServiceName:
        return { tag: field, value: local.serviceName };
      case F.sourceNamespaceServiceName:
        return { tag: field, value: `${local.namespaceId}/${local.serviceName}` };
      case F.sourceGroupId:
        return { tag: field, value: local.groupId };
      case F.sourceApplicationId:
        return { tag: field, value: local.applicationId };
      case F.sourceApplicationVersion:
        return { tag: field, value: local.applicationVersion };
      case F.sourceInstanceId:
        return { tag: field, value: local.instanceId };
      case F.sourceConnectionIp:
        return { tag: field, value: local.localIp };
      case F.destinationServiceName:
        return { tag: field, value: side.destination };
      // The API this process was called on: the inbound request's path.
      case F.sourceInterface:
        return { tag: 'request.path' };
      case F.destinationInterface:
        return { tag: TsfCallTag.interface };
      case F.requestHttpMethod:
        return { tag: TsfCallTag.httpMethod };
    }
  } else {
    switch (field) {
      // The caller's identity: tags lifted from `tsf-metadata` under TSF's own names.
      case F.sourceServiceName:
      case F.sourceGroupId:
      case F.sourceApplicationId:
      case F.sourceApplicationVersion:
      case F.sourceInstanceId:
      case F.sourceConnectionIp:
        return { tag: field };
      // This instance is the destination.
      case F.destinationServiceName:
        return { tag: field, value: local.serviceName };
      case F.destinationGroupId:
        return { tag: field, value: local.groupId };
      case F.destinationApplicationId:
        return { tag: field, value: local.applicationId };
      case F.destinationApplicationVersion:
        return { tag: field, value: local.applicationVersion };
      case F.destinationInterface:
        return { tag: 'request.path' };
      case F.requestHttpMethod:
        return { tag: 'request.method' };
    }
  }
  ctx.notice(
    `${path}.tagField`,
    `system field "${field}" is not computed by Meshlet on the ${side.side} side; the condition holds only for a request tag of that name`,
  );
  return { tag: field };
}

/** One core condition from a TSF operator; core's validation (regex safety, bounds) reported on `path`. */
export function coreCondition(tag: string, operator: TsfOperator, value: string, path: string): Condition {
  const op = TSF_OPERATORS[operator];
  let raw: Record<string, unknown>;
  if (op === 'in' || op === 'notIn') {
    // TSF joins the values of IN / NOT_IN with commas (polaris-java splits them the same way).
    raw = {
      tag,
      op,
      values: value
        .split(',')
        .map((v) => v.trim())
        .filter((v) => v.length > 0),
    };
  } else if (op === 'regex') raw = { tag, op, pattern: value };
  else raw = { tag, op, value };
  try {
    return parseCondition(raw, path);
  } catch (err) {
    if (err instanceof RuleValidationError) throw new TsfFieldError(path, err.reason);
    throw err;
  }
}
