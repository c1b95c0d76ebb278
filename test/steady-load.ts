// The steady load the Consul fault suites put on a mesh while they break things.

/** Sends calls back to back until stopped; counts what failed and why. */
export function steadyLoad(call: () => Promise<Response>) {
  const failures: string[] = [];
  const servedBy = new Map<string, number>();
  let sent = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      sent++;
      try {
        const res = await call();
        const body = await res.text();
        if (res.status !== 200) failures.push(`HTTP ${res.status}: ${body.slice(0, 100)}`);
        else servedBy.set(body, (servedBy.get(body) ?? 0) + 1);
      } catch (err) {
        failures.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  return {
    failures,
    servedBy,
    get sent() {
      return sent;
    },
    async stop() {
      running = false;
      await loop;
    },
  };
}
