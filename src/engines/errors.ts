/**
 * A bad engine option, thrown by an engine's constructor (like `ws` rejects contradictory
 * options with a TypeError). `key` is the option's path in the engine's options object (e.g.
 * `commandTimeoutMs`, `redis.sentinels`, `cluster[0].port`) and `problem` says what is wrong,
 * so a caller with its own option names (the CLI's config file) can word it its way.
 */
export class EngineOptionError extends TypeError {
  readonly code = 'INVALID_ENGINE_OPTION';

  constructor(
    readonly engine: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`${engine} engine option ${key} ${problem}`);
    this.name = 'EngineOptionError';
  }
}
