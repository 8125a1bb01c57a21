#!/usr/bin/env node
/**
 * The `chorus` command: picks a subcommand from the first argument (the server, `serve`,
 * when there is none or it is a flag) and hands it the rest. Adding a command is one entry
 * in `commands`.
 */
import type { Command } from './command.js';
import { initCommand } from './init.js';
import { SERVE_USAGE, serveCommand } from './serve.js';

/** Every subcommand by name. `serve` is also what runs without one. */
const commands: Record<string, Command> = {
  serve: serveCommand,
  init: initCommand,
};

const DEFAULT_COMMAND = 'serve';

function usage(): string {
  const names = Object.keys(commands);
  const width = Math.max(...names.map((n) => n.length));
  const list = names.map((n) => `  ${n.padEnd(width)}  ${commands[n]!.summary}`).join('\n');
  return `Usage: chorus [command] [options]

Commands:
${list}

Run "chorus <command> --help" for a command's options. Without a command, chorus runs "${DEFAULT_COMMAND}":

${SERVE_USAGE}`;
}

async function main(argv: readonly string[]): Promise<void> {
  const first = argv[0];
  if (first === 'help' || (argv.length === 1 && (first === '--help' || first === '-h'))) {
    process.stdout.write(usage());
    return;
  }
  if (first !== undefined && !first.startsWith('-')) {
    const command = Object.hasOwn(commands, first) ? commands[first] : undefined;
    if (command === undefined) {
      process.stderr.write(`chorus: unknown command ${JSON.stringify(first)}; commands: ${Object.keys(commands).join(', ')} (see chorus --help)\n`);
      process.exit(1);
    }
    await command.run(argv.slice(1));
    return;
  }
  await commands[DEFAULT_COMMAND]!.run(argv);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`chorus: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
