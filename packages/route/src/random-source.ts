// Kept where the router's option types import it from; the one generator lives in core.
export { type RandomSource, seededRandom } from '@meshlet/core';
