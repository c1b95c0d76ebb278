// V8's sampling heap profiler on this process, through the inspector, objects collected by
// minor and major GCs included: each sample stands for the bytes allocated around it, so
// the sum of the profile's self sizes is the bytes allocated while it ran. Used by
// inbound-alloc.ts and outbound-alloc.ts.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

export interface HeapNode {
  readonly selfSize: number;
  readonly callFrame?: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children: readonly HeapNode[];
}

/** Bytes the sampled profile stands for: the sum of every node's self size. */
export function totalBytes(node: HeapNode): number {
  let sum = node.selfSize;
  for (const c of node.children) sum += totalBytes(c);
  return sum;
}

/**
 * A sampler every `interval` bytes; `stop` gives the bytes allocated since `start` and the
 * profile's tree. With BENCH_ALLOC_PROFILE=<dir>, each stop also writes `<name>.heapprofile`
 * there (for Chrome DevTools, or a diff by frame).
 */
export async function heapSampler(
  interval: number,
  name: string,
): Promise<{ start(): Promise<void>; stop(): Promise<{ bytes: number; head: HeapNode }> }> {
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.enable');
  return {
    start: async () => {
      await session.post('HeapProfiler.startSampling', {
        samplingInterval: interval,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
    },
    stop: async () => {
      const { profile } = await session.post('HeapProfiler.stopSampling');
      const dir = process.env.BENCH_ALLOC_PROFILE;
      if (dir) writeFileSync(join(dir, `${name}.heapprofile`), JSON.stringify(profile));
      const head = profile.head as unknown as HeapNode;
      return { bytes: totalBytes(head), head };
    },
  };
}
