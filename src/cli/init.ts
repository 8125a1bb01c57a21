/**
 * `chorus init <dir> --template chat|dashboard|editor`: writes a small runnable app that embeds
 * Chorus as a library (its own http or Express server, a page, a README, `npm start`) from
 * templates/<template>/ into <dir>. Registered as the `init` subcommand of the `chorus` command.
 *
 * Options:
 *   --template <name>  chat | dashboard | editor (required)
 *   --name <name>      the app's package name (default: the directory's name, cleaned)
 *   --chorus <spec>    the app's dependency on Chorus, any npm spec: a version range, a
 *                      tarball, a `file:` path (default: `file:<this package>` when run from a
 *                      clone, `^<version>` when run from an installed package)
 *   --force            write into a directory that is not empty (files of the same name are overwritten)
 */
import type { Command } from './command.js';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, resolve, sep } from 'node:path';
import { PACKAGE_ROOT } from './static.js';

export const TEMPLATES = ['chat', 'dashboard', 'editor'] as const;
export type TemplateName = (typeof TEMPLATES)[number];
export const TEMPLATES_ROOT = resolve(PACKAGE_ROOT, 'templates');

export const INIT_USAGE = `Usage: chorus init <dir> --template chat|dashboard|editor [--name <name>] [--chorus <spec>] [--force]

Writes a small app that embeds Chorus into <dir>; then: cd <dir> && npm install && npm start
  chat       rooms with history, presence and typing (plain node:http)
  dashboard  live figures pushed to a broadcast-only channel, drawn with uPlot (Express)
  editor     a shared CodeMirror document over Chorus's y-websocket endpoint (plain node:http)
`;

/** A bad `init` invocation or an unwritable target; `code` is stable. */
export class InitError extends Error {
  readonly code: 'INIT_USAGE' | 'INIT_BAD_TEMPLATE' | 'INIT_NOT_EMPTY' | 'INIT_BAD_NAME';
  constructor(code: InitError['code'], message: string) {
    super(message);
    this.name = 'InitError';
    this.code = code;
  }
}

export interface InitOptions {
  dir: string;
  template: TemplateName;
  name: string;
  chorusSpec: string;
  force: boolean;
}

/** npm package names: lower case, no leading dot or underscore, at most 214 characters. */
const PACKAGE_NAME = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/;

function defaultChorusSpec(): string {
  const pkg = JSON.parse(readFileSync(resolve(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  // Installed (…/node_modules/chorus/): the published version. A clone: this very checkout.
  return PACKAGE_ROOT.split(sep).includes('node_modules') ? `^${pkg.version}` : `file:${PACKAGE_ROOT.replace(/[\\/]$/, '')}`;
}

export function parseInitArgs(argv: readonly string[], cwd: string): InitOptions {
  let dir: string | undefined;
  let template: string | undefined;
  let name: string | undefined;
  let chorusSpec: string | undefined;
  let force = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new InitError('INIT_USAGE', `${arg} needs a value`);
      return v;
    };
    if (arg === '--template' || arg === '-t') template = value();
    else if (arg === '--name') name = value();
    else if (arg === '--chorus') chorusSpec = value();
    else if (arg === '--force') force = true;
    else if (arg.startsWith('--template=')) template = arg.slice('--template='.length);
    else if (arg.startsWith('-')) throw new InitError('INIT_USAGE', `unknown option ${arg}`);
    else if (dir === undefined) dir = arg;
    else throw new InitError('INIT_USAGE', `unexpected argument ${JSON.stringify(arg)}`);
  }
  if (dir === undefined) throw new InitError('INIT_USAGE', 'the target directory is missing');
  if (template === undefined) throw new InitError('INIT_USAGE', '--template is missing');
  if (!(TEMPLATES as readonly string[]).includes(template)) {
    throw new InitError('INIT_BAD_TEMPLATE', `unknown template ${JSON.stringify(template)}: use ${TEMPLATES.join(', ')}`);
  }
  const target = resolve(cwd, dir);
  const pkgName =
    name ??
    (basename(target)
      .toLowerCase()
      .replace(/[^a-z0-9-._~]+/g, '-')
      .replace(/^[-._]+|-+$/g, '') || 'chorus-app');
  if (!PACKAGE_NAME.test(pkgName) || pkgName.length > 214) throw new InitError('INIT_BAD_NAME', `${JSON.stringify(pkgName)} is not a valid npm package name`);
  return { dir: target, template: template as TemplateName, name: pkgName, chorusSpec: chorusSpec ?? defaultChorusSpec(), force };
}

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules') out.push(...(await listFiles(path)));
    } else if (entry.isFile()) out.push(path);
  }
  return out.sort();
}

/** Writes the app; resolves with the files written, relative to the target. */
export async function writeApp(options: InitOptions): Promise<string[]> {
  const source = resolve(TEMPLATES_ROOT, options.template);
  if (existsSync(options.dir)) {
    if (!(await stat(options.dir)).isDirectory()) throw new InitError('INIT_NOT_EMPTY', `${options.dir} exists and is not a directory`);
    if (!options.force && (await readdir(options.dir)).length > 0) {
      throw new InitError('INIT_NOT_EMPTY', `${options.dir} is not empty (use --force to write into it anyway)`);
    }
  }
  const written: string[] = [];
  for (const file of await listFiles(source)) {
    const rel = relative(source, file);
    // npm never packs a file named .gitignore: templates ship it as `gitignore`.
    const targetRel = rel === 'gitignore' ? '.gitignore' : rel;
    let text = await readFile(file, 'utf8');
    text = text.replaceAll('{{name}}', options.name);
    if (rel === 'package.json') {
      const pkg = JSON.parse(text) as { dependencies?: Record<string, string> };
      pkg.dependencies = { ...pkg.dependencies, chorus: options.chorusSpec };
      text = `${JSON.stringify(pkg, null, 2)}\n`;
    }
    const target = resolve(options.dir, targetRel);
    await mkdir(resolve(target, '..'), { recursive: true });
    await writeFile(target, text);
    written.push(targetRel);
  }
  return written;
}

export interface InitIo {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  cwd: string;
}

/** The `init` subcommand. Resolves with the process exit code (0 ok, 1 error, usage on stderr). */
export async function runInit(argv: readonly string[], io: InitIo = { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() }): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(INIT_USAGE);
    return 0;
  }
  try {
    const options = parseInitArgs(argv, io.cwd);
    const files = await writeApp(options);
    const rel = relative(io.cwd, options.dir);
    const shown = rel === '' ? '.' : rel.startsWith('..') ? options.dir : rel;
    io.stdout.write(
      `Wrote the ${options.template} app "${options.name}" to ${shown} (${files.length} files; chorus: ${options.chorusSpec}).\n\n` +
        `  cd ${shown}\n  npm install\n  npm start\n\nThen open http://localhost:3000 in two tabs.\n`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof InitError)) throw err;
    io.stderr.write(`chorus init: ${err.message}\n\n${err.code === 'INIT_USAGE' || err.code === 'INIT_BAD_TEMPLATE' ? INIT_USAGE : ''}`);
    return 1;
  }
}

/** `chorus init`: registered in main.ts's command map. */
export const initCommand: Command = {
  summary: 'write a small runnable app (chat, dashboard or editor) that embeds Chorus',
  run: async (argv) => {
    process.exitCode = await runInit(argv);
  },
};
