// `npm run bench`: every benchmark, one markdown report on stdout.
import { fetchOverhead } from './fetch-overhead.js';

const sections = [fetchOverhead];
console.log('# Meshlet benchmarks\n');
for (const section of sections) console.log(`${await section()}\n`);
