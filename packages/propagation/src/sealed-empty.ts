/**
 * Empty collections shared by every request that has nothing to put in them (a dialect
 * that found none of its headers, a request without pass-through headers). `Object.freeze`
 * does not stop `Map.prototype.set`, so these refuse to be filled: a shared empty that
 * some code filled would hand its entries to every later request. Adding throws a
 * TypeError; deleting from or clearing an empty collection changes nothing and is allowed.
 */
class SealedEmptyMap<K, V> extends Map<K, V> {
  override set(key: K, _value: V): this {
    throw new TypeError(`a shared empty Map is read only (set ${String(key).slice(0, 64)})`);
  }
  override delete(_key: K): boolean {
    return false;
  }
  override clear(): void {}
}

class SealedEmptySet<T> extends Set<T> {
  override add(value: T): this {
    throw new TypeError(`a shared empty Set is read only (add ${String(value).slice(0, 64)})`);
  }
  override delete(_value: T): boolean {
    return false;
  }
  override clear(): void {}
}

/** A Map that is empty and stays empty (see `SealedEmptyMap`). */
export function sealedEmptyMap<K, V>(): ReadonlyMap<K, V> {
  return Object.freeze(new SealedEmptyMap<K, V>());
}

/** A Set that is empty and stays empty; `delete` is a no-op, so code that deletes from a result's set may hold it. */
export function sealedEmptySet<T>(): Set<T> {
  return Object.freeze(new SealedEmptySet<T>());
}
