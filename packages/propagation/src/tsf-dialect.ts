import { type Caller, checkTag, TagLimits } from '@meshlet/core';
import { formEncode } from './form-encoding.js';
import { encodeJsonEntries, readJsonHeader } from './json-header.js';
import {
  type DialectDroppedTag,
  emptyExtract,
  type HeaderBag,
  headerValue,
  NOTHING_EXTRACTED,
  type ScopeLookup,
  type TagDialect,
  warning,
} from './tag-dialect.js';
import { takeTag } from './take-tag.js';

/** TSF's user tags: URL-encoded JSON `[{"k": key, "v": value, "f": [flags]}]`. */
export const TSF_TAGS_HEADER = 'tsf-tags';
/** TSF's caller identity: URL-encoded JSON `{"ai", "av", "sn", "ii", "gi", "li", "ni"}`. */
export const TSF_METADATA_HEADER = 'tsf-metadata';
/**
 * TSF's `Tag.ControlFlag.TRANSITIVE`, serialised by Gson as `"0"`. A tag without it goes
 * to the next service only. (The other flags, "1"-"5", say where a tag is not used; they
 * do not change propagation and are not kept.)
 */
export const TSF_TRANSITIVE_FLAG = '0';

/**
 * Tag names for the fields of `tsf-metadata`: TSF's own system-tag names where it has one
 * (polaris-java connector-consul TagConstant.SYSTEM_FIELD), so TSF rules written against
 * `source.service.name` or `source.group.id` match as they are. TSF has no system field for
 * the namespace; `source.namespace.id` avoids core's `source.namespace`, which is the
 * caller header's namespace.
 */
export const TsfSystemTag = {
  applicationId: 'source.application.id',
  applicationVersion: 'source.application.version',
  serviceName: 'source.service.name',
  instanceId: 'source.instance.id',
  groupId: 'source.group.id',
  localIp: 'source.connection.ip',
  namespaceId: 'source.namespace.id',
} as const;

/**
 * The `source.*` tags (TSF's system tag names) that a caller's verified identity vouches
 * for: its service, namespace and instance. With auth on, the inbound pipeline sets these
 * from the identity instead of believing `tsf-metadata` or a tag header.
 */
export function verifiedSourceTags(identity: {
  readonly service: string;
  readonly namespace: string;
  readonly instance: string;
}): readonly (readonly [key: string, value: string])[] {
  return [
    [TsfSystemTag.serviceName, identity.service],
    [TsfSystemTag.namespaceId, identity.namespace],
    [TsfSystemTag.instanceId, identity.instance],
  ];
}

const METADATA_FIELDS = [
  ['ai', TsfSystemTag.applicationId],
  ['av', TsfSystemTag.applicationVersion],
  ['sn', TsfSystemTag.serviceName],
  ['ii', TsfSystemTag.instanceId],
  ['gi', TsfSystemTag.groupId],
  ['li', TsfSystemTag.localIp],
  ['ni', TsfSystemTag.namespaceId],
] as const;

/** This service's identity as TSF describes it, sent in `tsf-metadata` on every call. */
export interface TsfIdentity {
  readonly applicationId?: string;
  readonly applicationVersion?: string;
  readonly serviceName?: string;
  readonly instanceId?: string;
  readonly groupId?: string;
  readonly localIp?: string;
  readonly namespaceId?: string;
}

export interface TsfDialectOptions {
  /** Sent as `tsf-metadata` on every call; absent: the header is not sent. */
  readonly identity?: TsfIdentity;
}

/** The TSF dialect: `tsf-tags` and `tsf-metadata`. */
export function tsfDialect(options: TsfDialectOptions = {}): TagDialect {
  const metadataHeader = options.identity ? encodeIdentity(options.identity) : undefined;
  return {
    name: 'tsf',
    extract(headers: HeaderBag) {
      const rawTags = headerValue(headers, TSF_TAGS_HEADER);
      const rawMeta = headerValue(headers, TSF_METADATA_HEADER);
      if (!rawTags && !rawMeta) return NOTHING_EXTRACTED;
      const out = emptyExtract();
      let caller: Caller | undefined;
      if (rawTags) {
        const parsed = readJsonHeader(rawTags);
        if (!parsed.ok) out.warnings.push(warning(TSF_TAGS_HEADER, parsed.reason));
        else if (!Array.isArray(parsed.value)) out.warnings.push(warning(TSF_TAGS_HEADER, 'not a JSON array'));
        else {
          let bad = 0;
          for (const entry of parsed.value as unknown[]) {
            if (typeof entry !== 'object' || entry === null) {
              bad++;
              continue;
            }
            const { k, v, f } = entry as { k?: unknown; v?: unknown; f?: unknown };
            if (typeof k !== 'string' || typeof v !== 'string') {
              bad++;
              continue;
            }
            const transitive = Array.isArray(f) && f.includes(TSF_TRANSITIVE_FLAG);
            takeTag(out, TSF_TAGS_HEADER, k, v, !transitive);
          }
          if (bad > 0) out.warnings.push(warning(TSF_TAGS_HEADER, `${bad} entries are not {"k": string, "v": string}`));
        }
      }
      if (rawMeta) {
        const parsed = readJsonHeader(rawMeta);
        if (!parsed.ok) out.warnings.push(warning(TSF_METADATA_HEADER, parsed.reason));
        else if (typeof parsed.value !== 'object' || parsed.value === null || Array.isArray(parsed.value)) {
          out.warnings.push(warning(TSF_METADATA_HEADER, 'not a JSON object'));
        } else {
          const meta = parsed.value as Record<string, unknown>;
          const field = (name: string) => {
            const v = meta[name];
            return typeof v === 'string' && v !== '' ? v : undefined;
          };
          // The caller's identity describes the previous hop only: it never travels further.
          for (const [name, tag] of METADATA_FIELDS) {
            const v = field(name);
            if (v !== undefined) takeTag(out, TSF_METADATA_HEADER, tag, v, true);
          }
          // The caller's fields pass core's per-tag checks, as the caller header's do
          // (x-meshlet-caller): one over 512 bytes or with a control character is not taken.
          const callerField = (key: keyof Caller, name: string) => {
            const v = field(name);
            return v !== undefined && checkTag(key, v) === undefined ? v : undefined;
          };
          caller = {
            ...optional('service', callerField('service', 'sn')),
            ...optional('version', callerField('version', 'av')),
            ...optional('namespace', callerField('namespace', 'ni')),
            ...optional('instance', callerField('instance', 'ii')),
          };
        }
      }
      return caller ? { ...out, caller } : out;
    },
    emit(tags: Iterable<readonly [string, string]>, scope: ScopeLookup) {
      const entries: { key: string; json: string }[] = [];
      for (const [k, v] of tags) {
        const s = scope(k);
        if (s === 'local') continue;
        // Key order k, v, f as Gson writes the fields of TSF's Tag.
        entries.push({ key: k, json: JSON.stringify({ k, v, f: s === 'transitive' ? [TSF_TRANSITIVE_FLAG] : [] }) });
      }
      const headers: Record<string, string> = {};
      const dropped: DialectDroppedTag[] = [];
      if (entries.length > 0) {
        const { value, left } = encodeJsonEntries('[', entries, TagLimits.maxHeaderBytes);
        for (const { key, reason } of left) dropped.push({ key, reason, header: TSF_TAGS_HEADER });
        if (left.length < entries.length) headers[TSF_TAGS_HEADER] = value;
      }
      if (metadataHeader) headers[TSF_METADATA_HEADER] = metadataHeader;
      return { headers, dropped };
    },
  };
}

/** `tsf-metadata` for an identity: every field present (empty when unknown), as Jackson writes TSF's Metadata. */
function encodeIdentity(id: TsfIdentity): string {
  const json = JSON.stringify({
    ai: id.applicationId ?? '',
    av: id.applicationVersion ?? '',
    sn: id.serviceName ?? '',
    ii: id.instanceId ?? '',
    gi: id.groupId ?? '',
    li: id.localIp ?? '',
    ni: id.namespaceId ?? '',
  });
  return formEncode(json);
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}
