/** Option checks shared by the option resolvers: each throws a TypeError naming the bad key. */

export function fail(key: string, message: string): never {
  throw new TypeError(`invalid option ${key}: ${message}`);
}

export function positiveInt(key: string, value: unknown, allowZero = false): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < (allowZero ? 0 : 1)) {
    fail(key, `must be ${allowZero ? 'a non-negative' : 'a positive'} integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function positiveNumber(key: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    fail(key, `must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function oneOf<T extends string>(key: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !allowed.includes(value as T)) {
    fail(key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

export function bool(key: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(key, `must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

