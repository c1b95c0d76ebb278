import { MetaKey } from '@meshlet/core';

/**
 * The request tag that puts a request into a lane (full-link gray release). Set it at the
 * edge (`setTag(LANE_TAG, 'gray-1121')` or a header lifted into the tag); core's tag
 * header carries it to every downstream hop, and every hop's router sends the request to
 * the instances whose metadata `lane` has the same value.
 */
export const LANE_TAG = 'lane';

/** The instance metadata key that puts an instance into a lane. */
export const LANE_META_KEY = MetaKey.lane;
