/**
 * `chorus serve` (also plain `chorus`): reads flags, env and the config file, starts the
 * standalone server, and shuts down gracefully on SIGTERM / SIGINT (exit 0). Config errors exit 1.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfig, type StandaloneConfig } from './config.js';
import type { Command } from './command.js';
import { createLogger, startStandalone } from './standalone.js';

export const SERVE_USAGE = `Usage: chorus [serve] [options]

Starts the Chorus standalone server (WebSocket endpoint, HTTP API, demo page).

Options (each overrides its environment variable, which overrides the config file):
  --port <n>         TCP port, 0 for any free port       (env PORT, default 8080)
  --host <addr>      listen address                       (env HOST, default 0.0.0.0)
  --config <file>    JSON config file                     (env CHORUS_CONFIG); its schema is
                     docs/config.schema.json
  --log-level <lvl>  fatal|error|warn|info|debug|trace|silent (env LOG_LEVEL, default info)
  -h, --help         print this text

Environment:
  CHORUS_JWT_SECRET       HS256 secret for client tokens; without any key source the
                          server runs in DEMO mode (generated secret, open sign-in)
  CHORUS_API_KEY          bearer key for the HTTP API (/api/*); without it the API answers 401
  CHORUS_REDIS_URL        redis:// or rediss:// URL: run as one node of a cluster sharing Redis
                          (default: in-memory engine, one process)
  CHORUS_ALLOWED_ORIGINS  comma-separated browser Origin allow-list ("*" allows all);
                          default: only the server's own origin
  CHORUS_COMPRESSION      "on" turns on permessage-deflate for WebSocket clients that offer it
                          ("off" turns it off; default off; file key "compression")
  CHORUS_DATA_DIR         directory of the SQLite file that keeps documents (/yjs/) when
                          there is no Redis URL (file key dataDir, default ./chorus-data)
`;

async function serve(argv: readonly string[]): Promise<void> {
  let config: StandaloneConfig;
  try {
    config = loadConfig(argv, process.env, (path) => readFileSync(path, 'utf8'));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`chorus: config error: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  if (config.help) {
    process.stdout.write(SERVE_USAGE);
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

export const serveCommand: Command = {
  summary: 'run the server (the default command)',
  run: serve,
};
