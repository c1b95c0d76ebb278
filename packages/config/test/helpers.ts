import type { Config, ConfigChangeEvent } from '../src/index.js';

/** The next change event; fails (rather than hangs) if none comes within `boundMs`. */
export function nextChange(config: Config, boundMs = 5000): Promise<ConfigChangeEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no config change within ${boundMs} ms`));
    }, boundMs);
    const off = config.onChange((event) => {
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

/** Records every change event. */
export function recordChanges(config: Config): ConfigChangeEvent[] {
  const events: ConfigChangeEvent[] = [];
  config.onChange((e) => events.push(e));
  return events;
}
