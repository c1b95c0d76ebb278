import { type AsyncMethod, type AsyncMethodDecorator, methodDecorator } from '@meshlet/core';
import { Attr } from './attributes.js';
import { defaultTracing, type Tracing } from './tracing.js';

export interface TracedOptions {
  /** Span name. Default `<Class>.<method>`. */
  readonly name?: string;
  /** The tracing to record into. Default: the most recently created one, looked up per call (no tracing: the method runs untraced). */
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
  return methodDecorator('@Traced()', (method, name) => wrap(method, name, opts)) as TracedDecorator;
}
