/**
 * Writes docs/config.schema.json from the config file's zod schema (src/cli/config-schema.ts).
 * Run after changing the schema: `node --import tsx scripts/config-schema.ts` (or `npx tsx ...`).
 * test/config-schema.test.ts fails while the committed file differs from what this writes.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText } from '../src/cli/config-schema.js';

const target = fileURLToPath(new URL('../docs/config.schema.json', import.meta.url));
writeFileSync(target, configJsonSchemaText());
process.stdout.write(`wrote ${target}\n`);
