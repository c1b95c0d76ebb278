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

const ASYNC_METHOD = Symbol.for('meshlet.asyncMethod');

/**
 * Whether `method` is async by its kind: an async function, or a Meshlet decorator's wrapper
 * of one (a plain function that returns the method's promise). A decorator that refuses a
 * call rejects for such a method rather than throwing, however many decorators are stacked.
 */
export function isAsyncMethod(method: AnyMethod): boolean {
  return method.constructor.name === 'AsyncFunction' || (method as { [ASYNC_METHOD]?: boolean })[ASYNC_METHOD] === true;
}

/** `wrapped`, marked async when `method` is (isAsyncMethod). */
function keepAsync(method: AnyMethod, wrapped: AnyMethod): AnyMethod {
  if (isAsyncMethod(method) && !isAsyncMethod(wrapped)) Object.defineProperty(wrapped, ASYNC_METHOD, { value: true });
  return wrapped;
}

/**
 * Builds a method decorator from `wrap` (method, its name) → the wrapped method. Tells the
 * two decorator forms apart by their arguments: `(method, context)` with
 * `context.kind === 'method'` (standard), or `(prototype, key, descriptor)` (legacy). The
 * wrapper of an async method is marked async (isAsyncMethod) for the decorators above it.
 */
export function methodDecorator(label: string, wrap: (method: AnyMethod, name: string) => AnyMethod): MethodDecorator {
  return ((a: unknown, b: unknown, c?: unknown): unknown => {
    if (typeof a === 'function' && typeof b === 'object' && b !== null && (b as { kind?: unknown }).kind === 'method') {
      const method = a as AnyMethod;
      return keepAsync(method, wrap(method, String((b as ClassMethodDecoratorContext).name)));
    }
    const descriptor = c as PropertyDescriptor | undefined;
    if (typeof descriptor === 'object' && descriptor !== null && typeof descriptor.value === 'function') {
      const method = descriptor.value as AnyMethod;
      return { ...descriptor, value: keepMetadata(method, keepAsync(method, wrap(method, String(b as string | symbol)))) };
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

interface ReflectMetadata {
  getOwnMetadataKeys?(target: object): unknown[];
  getOwnMetadata(key: unknown, target: object): unknown;
  defineMetadata(key: unknown, value: unknown, target: object): void;
}

/**
 * With reflect-metadata loaded (NestJS), what the decorators applied before this one put on
 * the method (`@Get`'s path, `@UseGuards`…) is copied onto the wrapper, so the order of the
 * decorators does not matter: without it, `@RateLimit` above `@Get` would silently drop the route.
 */
function keepMetadata(original: AnyMethod, wrapper: AnyMethod): AnyMethod {
  const reflect = Reflect as unknown as ReflectMetadata;
  if (typeof reflect.getOwnMetadataKeys !== 'function' || wrapper === original) return wrapper;
  for (const key of reflect.getOwnMetadataKeys(original)) reflect.defineMetadata(key, reflect.getOwnMetadata(key, original), wrapper);
  return wrapper;
}
