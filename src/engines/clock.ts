/** Milliseconds since the Unix epoch. Engines take one as an option so tests can move time. */
export type Clock = () => number;

/** The system clock: the one place in the engines that reads `Date.now()`. */
export const systemClock: Clock = () => Date.now();
