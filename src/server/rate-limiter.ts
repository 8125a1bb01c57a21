// The token bucket is protocol-neutral and shared with the engines, which must not import server/.
export { TokenBucket, type RateDecision } from '../engines/token-bucket.js';
