/**
 * A position in a channel's stream. `offset` counts publications from 1; `epoch` names the
 * stream instance and changes whenever its history is lost, so a position is only meaningful
 * together with its epoch.
 */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

export function isStreamPosition(value: unknown): value is StreamPosition {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.offset === 'number' &&
    Number.isSafeInteger(v.offset) &&
    v.offset >= 0 &&
    typeof v.epoch === 'string' &&
    v.epoch.length > 0 &&
    v.epoch.length <= 64
  );
}
