// Generates web-client/src/protocol.d.ts from proto/schema.json with json-schema-to-typescript.
//
//   npm run gen:types              write the file
//   npm run gen:types -- --check   fail when the checked-in file differs from the schema (CI)
//
// proto/schema.json holds two complete schemas under $defs (ClientMessage, ServerMessage), each
// with its own nested $defs that its "#/$defs/X" references mean. Hoisting the nested definitions
// to the top makes those references resolve from the root; a name defined twice must be defined
// identically (ShareEnd, VideoPolicy, ParticipantId are shared by both sides).

import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { compile } from 'json-schema-to-typescript';

const schemaPath = fileURLToPath(new URL('../../proto/schema.json', import.meta.url));
const outPath = fileURLToPath(new URL('../src/protocol.d.ts', import.meta.url));

/**
 * @param {any} schema
 * @returns {import('json-schema-to-typescript').JSONSchema}
 */
function hoist(schema) {
  /** @type {Record<string, any>} */
  const defs = {};
  for (const [name, def] of Object.entries(schema.$defs)) {
    const { $defs: nested = {}, $schema: _ignored, ...rest } = def;
    for (const [inner, innerDef] of Object.entries(nested)) {
      if (inner in defs && !isDeepStrictEqual(defs[inner], innerDef)) {
        throw new Error(`schema: ${inner} is defined differently by two messages`);
      }
      defs[inner] = innerDef;
    }
    defs[name] = rest;
  }
  return {
    title: 'HavenProtocol',
    description: schema.description,
    type: /** @type {const} */ ('object'),
    additionalProperties: false,
    // Both message kinds are reachable from the root, so both are emitted (with everything they use).
    properties: {
      client: { $ref: '#/$defs/ClientMessage' },
      server: { $ref: '#/$defs/ServerMessage' },
    },
    required: ['client', 'server'],
    $defs: defs,
  };
}

const schema = JSON.parse(await readFile(schemaPath, 'utf8'));
const ts = await compile(hoist(schema), 'HavenProtocol', {
  additionalProperties: false,
  bannerComment:
    '/* Generated from proto/schema.json by `npm run gen:types` (web-client/tests/gen-types.mjs).\n' +
    ' * Do not edit: change the Rust protocol types, regenerate the schema, then run gen:types. */',
  unknownAny: true,
  strictIndexSignatures: true,
  format: true,
  cwd: fileURLToPath(new URL('../../proto/', import.meta.url)),
});

if (process.argv.includes('--check')) {
  const current = await readFile(outPath, 'utf8').catch(() => '');
  if (current !== ts) {
    console.error(
      'web-client/src/protocol.d.ts is stale: proto/schema.json changed.\n' +
        'Run `cd web-client/tests && npm run gen:types`, then fix what `npm run typecheck` reports.',
    );
    process.exit(1);
  }
  console.log('protocol.d.ts matches proto/schema.json');
} else {
  await writeFile(outPath, ts);
  console.log(`wrote ${outPath}`);
}
