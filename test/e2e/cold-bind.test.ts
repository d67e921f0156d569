/**
 * @module End-to-end: what a stem cell's bind looks for, now that it looks less (issue 11). The Node guest
 * asks the Functions Framework's registry only once the function has loaded the package; the Python guest
 * puts its `functions_framework` stand-in last on the import path instead of trying the real import at every
 * bind. A function's own package still wins over the stand-ins, and functions that use neither bind as before.
 * A Node cell binds a warm-up function of its own while it boots; the function bound later sees none of it.
 */

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  deployFolder,
  type Hearth,
  invoke,
  makeFolder,
  manifest,
  startHearth,
  type TempFolder,
} from '../support/hearth.js';

/** A package of the Functions Framework's shape, in the function's own node_modules (CommonJS, as the real one). */
const FAKE_FRAMEWORK = {
  'node_modules/@google-cloud/functions-framework/package.json': JSON.stringify({
    name: '@google-cloud/functions-framework',
    version: '9.9.9',
    main: 'build/src/index.js',
  }),
  'node_modules/@google-cloud/functions-framework/build/src/function_registry.js': `const registry = new Map();
exports.register = (name, signatureType, userFunction) => registry.set(name, { signatureType, userFunction });
exports.getRegisteredFunction = (name) => registry.get(name);
`,
  'node_modules/@google-cloud/functions-framework/build/src/index.js': `const registry = require('./function_registry.js');
exports.http = (name, fn) => registry.register(name, 'http', fn);
exports.cloudEvent = (name, fn) => registry.register(name, 'cloudevent', fn);
exports.own = true;
`,
};

const FUNCTIONS: [string, Record<string, string>][] = [
  [
    'bind-esm-own-framework',
    {
      'hearth.yaml': manifest('bind-esm-own-framework', '{ runtime: node20, handler: index.hello }'),
      ...FAKE_FRAMEWORK,
      // An ES module importing the CommonJS package: it is in the require cache all the same.
      'index.mjs': `import functions from '@google-cloud/functions-framework';
functions.http('hello', (req, res) => res.send(\`own \${functions.own} \${req.query.name}\`));
`,
    },
  ],
  [
    'bind-esm-plain',
    {
      'hearth.yaml': manifest('bind-esm-plain', '{ runtime: node20, handler: index }'),
      'index.mjs': `const ready = await Promise.resolve('after an await at load');
export default async function (event) {
  return { ready, query: event.query };
}
`,
    },
  ],
  [
    'bind-cjs-named',
    {
      'hearth.yaml': manifest('bind-cjs-named', '{ runtime: node20, handler: index.handler }'),
      'index.js': `exports.handler = async (event) => ({ statusCode: 200, body: 'cjs ' + event.rawPath });
`,
    },
  ],
  [
    // What a Node cell's own warm-up bind (bootstrap.mts `warmBind`) must leave behind: nothing the function sees.
    'bind-node-after-warm-up',
    {
      'hearth.yaml': manifest(
        'bind-node-after-warm-up',
        '{ runtime: node20, handler: index, eventFormat: hearth, env: { GREETING: own } }',
      ),
      'index.mjs': `import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export default async function (event, ctx) {
  let framework = 'found';
  try {
    createRequire(import.meta.url)('@google-cloud/functions-framework');
  } catch (error) {
    framework = error.code;
  }
  return {
    name: process.env.HEARTH_FUNCTION,
    ctxName: ctx.functionName,
    greeting: process.env.GREETING,
    cwdIsCode: process.cwd() === dirname(fileURLToPath(import.meta.url)),
    warmUpLeft: Object.entries(process.env).filter(([, value]) => value.includes('.warm')).map(([key]) => key),
    framework,
    query: event.query,
  };
}
`,
    },
  ],
  [
    'bind-node-throws',
    {
      'hearth.yaml': manifest('bind-node-throws', '{ runtime: node20, handler: index }'),
      'index.mjs': `throw new TypeError('config missing at load');
`,
    },
  ],
  [
    'bind-py-own-framework',
    {
      'hearth.yaml': manifest('bind-py-own-framework', '{ runtime: python3, handler: main.handler }'),
      'functions_framework.py': 'OWN = True\n\n\ndef http(fn):\n    return fn\n',
      'main.py': `import functions_framework


def handler(event, context):
    return {"own": getattr(functions_framework, "OWN", False)}
`,
    },
  ],
  [
    'bind-py-stand-in',
    {
      'hearth.yaml': manifest('bind-py-stand-in', '{ runtime: python3, handler: main.hello }'),
      'main.py': `import functions_framework


@functions_framework.http
def hello(request):
    return "stand-in " + request.args.get("name", "")
`,
    },
  ],
  [
    'bind-py-plain',
    {
      'hearth.yaml': manifest('bind-py-plain', '{ runtime: python3, handler: main.handler }'),
      'main.py': `import sys


def handler(event, context):
    return {"framework": "functions_framework" in sys.modules}
`,
    },
  ],
];

let hearth: Hearth;
const folders: TempFolder[] = [];

beforeAll(async () => {
  hearth = await startHearth();
  for (const [name, files] of FUNCTIONS) {
    const folder = await makeFolder(files);
    folders.push(folder);
    const deployed = await deployFolder(hearth.url, folder.dir, { name, query: '?verify=false' });
    expect(deployed.status, `deploy ${name}: ${JSON.stringify(deployed.body)}`).toBe(200);
  }
}, 120_000);

afterAll(async () => {
  await hearth?.stop();
  for (const folder of folders) await folder.cleanup();
});

describe('binding a stem cell to a function', () => {
  it("Node: a Functions Framework package of the function's own, imported from an ES module, registers and runs", async () => {
    const response = await invoke(hearth.url, 'bind-esm-own-framework', { path: '?name=Ada' });
    expect(response.status, response.text).toBe(200);
    expect(response.text).toBe('own true Ada');
  });

  it('Node: an ES module awaiting at load and a CommonJS named export bind to their conventions', async () => {
    const esm = await invoke(hearth.url, 'bind-esm-plain', { path: '?a=1' });
    expect(esm.status, esm.text).toBe(200);
    expect(esm.json()).toEqual({ ready: 'after an await at load', query: { a: '1' } });
    const cjs = await invoke(hearth.url, 'bind-cjs-named', { path: '/x' });
    expect(cjs.status, cjs.text).toBe(200);
    expect(cjs.text).toBe('cjs /x');
  });

  it("Node: a cell that bound its own warm-up function at boot serves the function's code, environment and folder only", async () => {
    const response = await invoke(hearth.url, 'bind-node-after-warm-up', { path: '?n=1' });
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({
      name: 'bind-node-after-warm-up',
      ctxName: 'bind-node-after-warm-up',
      greeting: 'own',
      cwdIsCode: true,
      warmUpLeft: [],
      // eventFormat hearth: the Functions Framework stand-in the warm-up's `auto` bind installed is gone.
      framework: 'MODULE_NOT_FOUND',
      query: { n: '1' },
    });
  });

  it('Node: a module that throws at load answers a clear error naming the handler and the cause', async () => {
    const response = await invoke(hearth.url, 'bind-node-throws');
    expect(response.status).toBe(502);
    expect(response.text).toContain(
      'handler \\"index\\" could not be loaded: TypeError: config missing at load',
    );
  });

  it("Python: a functions_framework module of the function's own wins over the stand-in", async () => {
    const response = await invoke(hearth.url, 'bind-py-own-framework');
    expect(response.status, response.text).toBe(200);
    expect(response.json()).toEqual({ own: true });
  });

  it('Python: without the package, @functions_framework.http is the stand-in; a function that never imports it does not load it', async () => {
    const standIn = await invoke(hearth.url, 'bind-py-stand-in', { path: '?name=Ada' });
    expect(standIn.status, standIn.text).toBe(200);
    expect(standIn.text).toBe('stand-in Ada');
    const plain = await invoke(hearth.url, 'bind-py-plain');
    expect(plain.status, plain.text).toBe(200);
    expect(plain.json()).toEqual({ framework: false });
  });
});
