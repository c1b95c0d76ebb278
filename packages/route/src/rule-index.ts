import { type Condition, comparedValue, type Matcher, type TagLookup } from '@meshlet/core';

/**
 * Finds the first matching rule without testing every rule. Every condition is false on
 * a tag the request lacks (core's rule), so each rule is filed under one of its tags:
 * under the tag's value when it has an `equals` / `in` condition (the tag with the most
 * distinct values in the rule set wins, as the most selective), else under the tag's
 * presence. A decision reads each indexed tag once and tests only the rules filed under
 * what the request has, in priority order: the cost follows the rules that could match,
 * not the size of the rule set.
 */
export class RuleIndex {
  readonly #tags: readonly string[];
  readonly #byValue: readonly (ReadonlyMap<string, Int32Array> | undefined)[];
  readonly #present: readonly (Int32Array | undefined)[];
  /** Rules without conditions: they match everything. */
  readonly #always: Int32Array;
  readonly #matchers: readonly Matcher[];

  /** `rules` in priority order, with their compiled matchers. */
  constructor(rules: readonly { readonly when: readonly Condition[]; readonly matches: Matcher }[]) {
    this.#matchers = rules.map((r) => r.matches);
    const distinct = new Map<string, Set<string>>();
    for (const r of rules) {
      for (const c of r.when) {
        const values = equalityValues(c);
        if (!values) continue;
        const set = distinct.get(c.tag) ?? new Set<string>();
        for (const v of values) set.add(v);
        distinct.set(c.tag, set);
      }
    }
    const byValue = new Map<string, Map<string, number[]>>();
    const present = new Map<string, number[]>();
    const always: number[] = [];
    const push = <K>(m: Map<K, number[]>, k: K, i: number) => {
      const list = m.get(k) ?? [];
      list.push(i);
      m.set(k, list);
    };
    rules.forEach((r, i) => {
      if (r.when.length === 0) {
        always.push(i);
        return;
      }
      let key: { tag: string; values: readonly string[] } | undefined;
      for (const c of r.when) {
        const values = equalityValues(c);
        if (values && (!key || (distinct.get(c.tag)?.size ?? 0) > (distinct.get(key.tag)?.size ?? 0))) key = { tag: c.tag, values };
      }
      if (key) {
        const values = byValue.get(key.tag) ?? new Map<string, number[]>();
        byValue.set(key.tag, values);
        for (const v of new Set(key.values)) push(values, v, i);
      } else push(present, (r.when[0] as Condition).tag, i);
    });
    const tags = [...new Set([...byValue.keys(), ...present.keys()])];
    this.#tags = tags;
    this.#byValue = tags.map((t) => {
      const m = byValue.get(t);
      return m && new Map([...m].map(([v, list]) => [v, Int32Array.from(list)]));
    });
    this.#present = tags.map((t) => {
      const list = present.get(t);
      return list && Int32Array.from(list);
    });
    this.#always = Int32Array.from(always);
  }

  /** The position of the first rule that matches, or -1. */
  first(lookup: TagLookup): number {
    const none = this.#matchers.length;
    let best = this.#scan(this.#always, lookup, none);
    const tags = this.#tags;
    for (let t = 0; t < tags.length; t++) {
      const value = lookup(tags[t] as string);
      if (value === undefined) continue;
      const byValue = this.#byValue[t];
      if (byValue !== undefined) {
        const list = byValue.get(value);
        if (list !== undefined) best = this.#scan(list, lookup, best);
      }
      const present = this.#present[t];
      if (present !== undefined) best = this.#scan(present, lookup, best);
    }
    return best === none ? -1 : best;
  }

  /** The first rule of `list` (ascending) before `best` that matches, else `best`. */
  #scan(list: Int32Array, lookup: TagLookup, best: number): number {
    for (let i = 0; i < list.length; i++) {
      const r = list[i] as number;
      if (r >= best) return best;
      if ((this.#matchers[r] as Matcher)(lookup)) return r;
    }
    return best;
  }
}

/**
 * The values an `equals` / `in` condition accepts, in the form the request's tag is
 * compared with (core's comparedValue, as the compiled matcher has them); undefined for
 * other operators.
 */
function equalityValues(c: Condition): readonly string[] | undefined {
  switch (c.op) {
    case 'equals':
      return [comparedValue(c.tag, c.value)];
    case 'in':
      return c.values.map((v) => comparedValue(c.tag, v));
    default:
      return undefined;
  }
}
