/**
 * Bundles the pages served by the standalone server (web/src/<page>/main.ts) into dist/web/:
 * one ES module per page (`chat.js`, `dashboard.js`, `editor.js`, `admin.js`), their CSS (uPlot's and
 * CodeMirror's come in through imports, so no inline styles or scripts are needed under the
 * pages' strict CSP), shared chunks under `chunks/`, and source maps. Run by `npm run build`
 * after tsc; `node --import tsx scripts/build-web.ts [--watch]` alone rebuilds the pages only.
 */
import { build, context, type BuildOptions } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';

const root = fileURLToPath(new URL('../', import.meta.url));

/** Page name -> entry point. The names are the bundle file names the HTML pages load. */
export const PAGE_ENTRIES: Readonly<Record<string, string>> = {
  chat: 'web/src/chat/main.ts',
  dashboard: 'web/src/dashboard/main.ts',
  editor: 'web/src/editor/main.ts',
  admin: 'web/src/admin/main.ts',
};

export const WEB_OUT_DIR = resolve(root, 'dist/web');

export const buildOptions: BuildOptions = {
  absWorkingDir: root,
  entryPoints: Object.fromEntries(Object.entries(PAGE_ENTRIES).map(([name, file]) => [name, resolve(root, file)])),
  outdir: WEB_OUT_DIR,
  bundle: true,
  format: 'esm',
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'browser',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
  // The client library is isomorphic; make sure nothing Node-only slips into a page.
  define: { 'process.env.NODE_ENV': '"production"' },
};

async function main(): Promise<void> {
  if (process.argv.includes('--watch')) {
    const ctx = await context({ ...buildOptions, logLevel: 'info' });
    await ctx.watch();
    return;
  }
  const result = await build({ ...buildOptions, metafile: true });
  const outputs = Object.entries(result.metafile?.outputs ?? {}).filter(([file]) => !file.endsWith('.map'));
  const total = outputs.reduce((sum, [, out]) => sum + out.bytes, 0);
  process.stdout.write(`build-web: ${outputs.length} files, ${(total / 1024).toFixed(0)} KiB in dist/web\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`build-web: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
