import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configFileSchema, configJsonSchemaText } from '../src/cli/config-schema.js';

const COMMITTED = fileURLToPath(new URL('../docs/config.schema.json', import.meta.url));

describe('docs/config.schema.json', () => {
  it('is what the zod schema generates (run scripts/config-schema.ts after changing the schema)', () => {
    assert.equal(readFileSync(COMMITTED, 'utf8'), configJsonSchemaText());
  });

  it('describes every top-level key of the config file and refuses others', () => {
    const schema = JSON.parse(readFileSync(COMMITTED, 'utf8')) as { properties: Record<string, unknown>; additionalProperties: unknown };
    assert.deepEqual(Object.keys(schema.properties).sort(), Object.keys(configFileSchema.shape).sort());
    assert.equal(schema.additionalProperties, false);
    for (const key of ['port', 'auth', 'redis', 'proxy', 'webhooks', 'namespaces', 'limits']) assert.ok(key in schema.properties, key);
  });

  it('a config file may name its schema with "$schema" (editors use it; chorus ignores it)', () => {
    const parsed = configFileSchema.parse({ $schema: './docs/config.schema.json', port: 9000 });
    assert.equal(parsed.port, 9000);
  });
});
