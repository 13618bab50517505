// Checks the committed contract files (the test command runs it):
// - docs/asyncapi.json (and each examples/*/asyncapi.json) validates against the official AsyncAPI 3.0.0 JSON Schema (@asyncapi/specs),
//   and every local "$ref" in it resolves;
// - the browser client's TypeScript declarations compile with tsc --strict, and so does a page's
//   use of them (clients/js/test/types.ts, which also expects a loose message to be refused).
// That the files equal freshly generated ones is checked by tests/tests/contract.rs.
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');
const specs = require('@asyncapi/specs');

let failures = 0;
const fail = (text) => {
  console.error(`contract: ${text}`);
  failures += 1;
};

const check = (relative) => {
  const document = JSON.parse(readFileSync(join(root, relative), 'utf8'));
  const schema = specs.schemas[document.asyncapi];
  if (!schema) {
    fail(`${relative}: @asyncapi/specs has no schema for AsyncAPI ${document.asyncapi}`);
  } else {
    // The specification embeds the draft-07 meta-schema itself, so Ajv's own copy stays out.
    const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    if (!validate(document)) {
      for (const error of validate.errors.slice(0, 20)) {
        fail(`${relative}: ${error.instancePath || '/'} ${error.message} ${JSON.stringify(error.params)}`);
      }
    }
  }

  const resolve = (pointer) =>
    pointer
      .slice(2)
      .split('/')
      .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((node, key) => (node === undefined ? undefined : node[key]), document);
  let references = 0;
  const walk = (node, path) => {
    if (Array.isArray(node)) {
      node.forEach((child, i) => walk(child, `${path}/${i}`));
    } else if (node && typeof node === 'object') {
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') {
          references += 1;
          if (!value.startsWith('#/') || resolve(value) === undefined) fail(`${relative}: ${path}: $ref ${value} does not resolve`);
        } else {
          walk(value, `${path}/${key}`);
        }
      }
    }
};
walk(document, '');
return `${relative} is valid AsyncAPI ${document.asyncapi} (${references} references resolve)`;
};

// This repository's contract and every example application's.
const documents = ['docs/asyncapi.json', ...readdirSync(join(root, 'examples'))
  .map((name) => `examples/${name}/asyncapi.json`)
  .filter((relative) => existsSync(join(root, relative)))];
const checked = documents.map(check);

const declarations = ['clients/js/protocol.d.ts', 'clients/js/websocket-manager.d.ts', 'clients/js/test/types.ts'].map((f) => join(root, f));
try {
  execFileSync(join(root, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', ...declarations], { stdio: 'inherit' });
} catch {
  fail('the TypeScript declarations do not compile');
}

if (failures > 0) process.exit(1);
console.log(`contract: ${checked.join('; ')}; the TypeScript declarations compile`);
