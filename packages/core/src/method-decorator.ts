/** Any method: what a method decorator receives and returns. */
// biome-ignore lint/suspicious/noExplicitAny: a decorator takes methods of every signature.
export type AnyMethod = (this: any, ...args: any[]) => any;

/** A method decorator that works as a TC39 standard decorator and with `experimentalDecorators` (NestJS). */
export interface MethodDecorator {
  <T extends AnyMethod>(method: T, context: ClassMethodDecoratorContext): T;
  (target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
}

/** A method decorator put on something that is not a method. A TypeError, with Meshlet's code. */
export class BadDecoratorError extends TypeError {
  static readonly code = 'MESHLET_BAD_DECORATOR';
  readonly code = BadDecoratorError.code;
  constructor(label: string) {
    super(`${label} goes on a method, not a class, field or accessor`);
    this.name = 'BadDecoratorError';
  }
}

/**
 * Builds a method decorator from `wrap` (method, its name) → the wrapped method. Tells the
 * two decorator forms apart by their arguments: `(method, context)` with
 * `context.kind === 'method'` (standard), or `(prototype, key, descriptor)` (legacy).
 */
export function methodDecorator(label: string, wrap: (method: AnyMethod, name: string) => AnyMethod): MethodDecorator {
  return ((a: unknown, b: unknown, c?: unknown): unknown => {
    if (typeof a === 'function' && typeof b === 'object' && b !== null && (b as { kind?: unknown }).kind === 'method') {
      return wrap(a as AnyMethod, String((b as ClassMethodDecoratorContext).name));
    }
    const descriptor = c as PropertyDescriptor | undefined;
    if (typeof descriptor === 'object' && descriptor !== null && typeof descriptor.value === 'function') {
      return { ...descriptor, value: wrap(descriptor.value as AnyMethod, String(b as string | symbol)) };
    }
    throw new BadDecoratorError(label);
  }) as MethodDecorator;
}

/** An async method, as the decorators of governed calls take them. */
export type AsyncMethod<This, Args extends unknown[], R> = (this: This, ...args: Args) => Promise<R>;

/** A method decorator for async methods, in both forms (standard and `experimentalDecorators`). */
export interface AsyncMethodDecorator {
  <This, Args extends unknown[], R>(
    method: AsyncMethod<This, Args, R>,
    context: ClassMethodDecoratorContext<This, AsyncMethod<This, Args, R>>,
  ): AsyncMethod<This, Args, R>;
  (target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
}
