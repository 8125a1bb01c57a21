import { randomBytes } from 'node:crypto';

let counter = 0;
let lastNow = -1;
let lastNowText = '';
/** Random per process (8 base-36 characters): ids of two nodes made in the same ms with the same counter still differ. */
const PROCESS_SALT = randomBytes(6).readUIntBE(0, 6).toString(36).padStart(10, '0').slice(-8);
/** A connection id unique across nodes (time, counter and the process's randomness); `now` is ms since the epoch. */
export function newClientId(now: number): string {
  counter = (counter + 1) % Number.MAX_SAFE_INTEGER;
  if (now !== lastNow) {
    lastNow = now;
    lastNowText = now.toString(36); // the same for every id of one millisecond
  }
  return `c_${lastNowText}${counter.toString(36)}${PROCESS_SALT}`;
}
