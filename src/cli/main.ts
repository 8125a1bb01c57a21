#!/usr/bin/env node
/**
 * The `chorus` command: reads flags, env and the config file, starts the standalone server,
 * and shuts down gracefully on SIGTERM / SIGINT (exit 0). Config errors exit 1.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, USAGE, type StandaloneConfig } from './config.js';
import { createLogger, startStandalone } from './standalone.js';

async function main(): Promise<void> {
  let config: StandaloneConfig;
  try {
    config = loadConfig(process.argv.slice(2), process.env, (path) => readFileSync(path, 'utf8'));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`chorus: config error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (config.help) {
    process.stdout.write(USAGE);
    return;
  }

  const logger = createLogger(config.logLevel);
  let handle;
  try {
    handle = await startStandalone(config, { logger });
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    process.exit(1);
  }

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    logger.info({ signal }, 'signal received, shutting down gracefully');
    // Fail-safe if draining hangs: drain timeout plus a margin.
    const limitMs = (config.server.shutdown?.drainTimeoutMs ?? 10_000) + 5_000;
    setTimeout(() => {
      logger.error({ limitMs }, 'shutdown took too long: exiting');
      process.exit(1);
    }, limitMs).unref();
    handle.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((err: unknown) => {
  process.stderr.write(`chorus: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
