import {
  type AsyncMethod,
  type AsyncMethodDecorator,
  badOption,
  methodDecorator,
  onlyOptionKeys,
  optionObject,
  shownValue,
} from '@meshlet/core';
import { Attr } from './attributes.js';
import { defaultTracing, type Tracing } from './tracing.js';

export interface TracedOptions {
  /** Span name. Default `<Class>.<method>`. */
  readonly name?: string;
  /**
   * The tracing to record into. Default, looked up per call: the one serving the current
   * request (a mesh's inbound request), else the most recently created one (no tracing: the
   * method runs untraced).
   */
  readonly tracing?: Tracing;
}

/** A decorator usable both as a TC39 standard decorator and with `experimentalDecorators`. */
export type TracedDecorator = AsyncMethodDecorator;

function wrap<This, Args extends unknown[], R>(
  method: AsyncMethod<This, Args, R>,
  methodName: string,
  options: TracedOptions,
): AsyncMethod<This, Args, R> {
  return function traced(this: This, ...args: Args): Promise<R> {
    const tracing = options.tracing ?? defaultTracing();
    if (!tracing) return method.apply(this, args);
    const owner = (this as { constructor?: { name?: string } } | undefined)?.constructor?.name;
    const name = options.name ?? (owner && owner !== 'Object' && owner !== 'Function' ? `${owner}.${methodName}` : methodName);
    return tracing.inSpan(name, () => method.apply(this, args), { attributes: { [Attr.codeFunctionName]: name } });
  };
}

/**
 * Gives an async method its own INTERNAL span, child of the active span; governed calls
 * made inside it become its children. Works as a standard decorator and as a legacy
 * (`experimentalDecorators`) one.
 */
export function Traced(options: string | TracedOptions = {}): TracedDecorator {
  const opts: TracedOptions = typeof options === 'string' ? { name: options } : options;
  // Checked when made: a misspelt key is refused, not a span silently misnamed.
  const o = optionObject(opts, '@Traced');
  onlyOptionKeys(o, '@Traced', ['name', 'tracing']);
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name === '' || o.name.length > 256))
    throw badOption('@Traced.name', `${shownValue(o.name)} must be a span name of 1 to 256 characters`);
  if (o.tracing !== undefined && !(typeof o.tracing === 'object' && o.tracing !== null && 'inSpan' in o.tracing))
    throw badOption('@Traced.tracing', `${shownValue(o.tracing)} must be a Tracing (createTracing's)`);
  return methodDecorator('@Traced()', (method, name) => wrap(method, name, opts)) as TracedDecorator;
}
