#!/usr/bin/env node
// Validates an OpenAPI 3.1 document with a real validator, and evaluates values against its schemas.
//
//   node scripts/openapi-check.mjs [--probes probes.json] openapi.json [more.json ...]
//
// 1. The document against the OpenAPI Initiative's OpenAPI 3.1 JSON Schema, every $ref resolved
//    (npm @seriousme/openapi-schema-validator).
// 2. Every Schema Object (components, parameters, media types) compiled by Ajv's JSON Schema 2020-12 validator
//    (the one the package above uses) in strict mode, against the 2020-12 meta-schema: the OpenAPI schema only
//    requires a Schema Object to be an object, so a wrong keyword or value (an enum that is not an array, an
//    unknown format, a required property that is not defined) is caught here.
// 3. Every example of a request body or parameter, and every default, validated against its own schema.
// 4. probes.json, when given: [{"name", "schema": "<components schema name>", "value"}]; each is evaluated against
//    the first document's schema.
//
// output: {"documents": [{"file", "errors": [{"where", "message"}]}], "probes": [{"name", "valid", "errors": []}]}
// exit:   0 every document is valid; 1 one is not; 2 bad input, or the validator is not installed.
//
// The packages are installed by scripts/install-tools.sh into .tools/; OPENAPI_TOOLS overrides where to find them.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

function fail(msg) {
  process.stderr.write('openapi-check: ' + msg + '\n');
  process.exit(2);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const tools = process.env.OPENAPI_TOOLS || path.join(here, '..', '.tools', 'node_modules');
const validatorIndex = path.join(tools, '@seriousme', 'openapi-schema-validator', 'index.js');
let Validator, Ajv2020, addFormats;
try {
  ({ Validator } = await import(pathToFileURL(validatorIndex).href));
  // Ajv and its formats as the validator package resolves them: the same JSON Schema implementation.
  const requireFromValidator = createRequire(validatorIndex);
  const ajvModule = requireFromValidator('ajv/dist/2020.js');
  Ajv2020 = ajvModule.default || ajvModule;
  const formatsModule = requireFromValidator('ajv-formats');
  addFormats = formatsModule.default || formatsModule;
} catch (e) {
  fail('cannot load @seriousme/openapi-schema-validator from ' + tools + ' (run scripts/install-tools.sh): ' + e.message);
}

const args = process.argv.slice(2);
let probesFile = null;
if (args[0] === '--probes') {
  probesFile = args[1];
  args.splice(0, 2);
}
if (!args.length) fail('usage: openapi-check.mjs [--probes probes.json] openapi.json [more.json ...]');
let probes = [];
const docs = [];
try {
  if (probesFile) probes = JSON.parse(fs.readFileSync(probesFile, 'utf8'));
  for (const f of args) docs.push({ file: f, doc: JSON.parse(fs.readFileSync(f, 'utf8')) });
} catch (e) {
  fail('cannot read the input: ' + e.message);
}

const ajvErrors = (errs) => (errs || []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params && e.params.allowedValues ? ' ' + JSON.stringify(e.params.allowedValues) : ''}`);
// One validator for every document: it compiles the OpenAPI schema once.
const validator = new Validator({ allErrors: true });

async function checkDocument(doc, probes) {
  const errors = [];
  const report = (where, message) => errors.push({ where, message });

  // 1. The OpenAPI 3.1 schema and the references.
  const res = await validator.validate(structuredClone(doc));
  if (!res.valid) {
    if (typeof res.errors === 'string') report('document', res.errors);
    else for (const e of res.errors || []) report('document' + (e.instancePath || ''), e.message + (e.params ? ' ' + JSON.stringify(e.params) : ''));
  }
  if (validator.version !== '3.1') report('document', `not an OpenAPI 3.1 document (version ${validator.version})`);

  // 2. The Schema Objects, by JSON Schema 2020-12 in strict mode.
  const base = 'urn:openapi-check:components';
  const components = (doc.components && doc.components.schemas) || {};
  // References into components, made absolute so that any Schema Object compiles on its own.
  const absolute = (schema) => JSON.parse(JSON.stringify(schema).replaceAll('"#/components/schemas/', `"${base}#/$defs/`));
  const ajv = new Ajv2020({ strict: true, strictRequired: true, allErrors: true, validateFormats: true, inlineRefs: false });
  addFormats(ajv);
  try {
    ajv.addSchema({ $id: base, $defs: absolute(components) });
  } catch (e) {
    report('components.schemas', e.message);
  }
  const compiled = new Map();
  function compile(where, schema) {
    const key = JSON.stringify(schema);
    if (compiled.has(key)) return compiled.get(key);
    let fn = null;
    try {
      fn = ajv.compile(absolute(schema));
    } catch (e) {
      report(where, e.message);
    }
    compiled.set(key, fn);
    return fn;
  }
  for (const name of Object.keys(components)) {
    compile(`components.schemas.${name}`, { $ref: `#/components/schemas/${name}` });
  }

  // 3. Defaults and examples against their schemas.
  function check(where, schema, value, what) {
    const fn = compile(where, schema);
    if (fn && !fn(value)) report(`${where} (${what})`, ajvErrors(fn.errors).join('; '));
  }
  function defaults(where, schema) {
    if (!schema || typeof schema !== 'object') return;
    if (Array.isArray(schema)) return schema.forEach((s, i) => defaults(`${where}[${i}]`, s));
    if ('default' in schema) check(where, schema, schema.default, 'default ' + JSON.stringify(schema.default));
    for (const [k, v] of Object.entries(schema)) {
      if (k === 'default' || k === 'enum' || k === 'const' || k === 'examples') continue;
      if (k === 'properties' || k === '$defs' || k === 'patternProperties') {
        for (const [p, s] of Object.entries(v || {})) defaults(`${where}.${k}.${p}`, s);
      } else if (typeof v === 'object') defaults(`${where}.${k}`, v);
    }
  }
  for (const [name, schema] of Object.entries(components)) defaults(`components.schemas.${name}`, schema);
  for (const [p, methods] of Object.entries(doc.paths || {})) {
    for (const [m, op] of Object.entries(methods || {})) {
      const where = `${m.toUpperCase()} ${p}`;
      for (const prm of op.parameters || []) {
        const w = `${where} parameter ${prm.name}`;
        if (prm.schema) {
          compile(w, prm.schema);
          defaults(w, prm.schema);
          if ('example' in prm) check(w, prm.schema, prm.example, 'example');
        }
      }
      const content = (op.requestBody && op.requestBody.content) || {};
      for (const [media, mt] of Object.entries(content)) {
        const w = `${where} request ${media}`;
        if (!mt.schema) continue;
        compile(w, mt.schema);
        if ('example' in mt) check(w, mt.schema, mt.example, 'example');
        for (const [exName, ex] of Object.entries(mt.examples || {})) check(w, mt.schema, ex.value, 'example ' + exName);
      }
      for (const [status, r] of Object.entries(op.responses || {})) {
        for (const [media, mt] of Object.entries(r.content || {})) {
          if (mt.schema) compile(`${where} answer ${status} ${media}`, mt.schema);
        }
      }
    }
  }

  // 4. Probes.
  const results = [];
  for (const pr of probes) {
    const fn = compile(`probe ${pr.name}`, { $ref: `#/components/schemas/${pr.schema}` });
    if (!fn) {
      results.push({ name: pr.name, valid: false, errors: ['the schema does not compile'] });
      continue;
    }
    const valid = fn(pr.value);
    results.push({ name: pr.name, valid, errors: valid ? [] : ajvErrors(fn.errors) });
  }
  return { errors, probes: results };
}

const out = { documents: [], probes: [] };
for (const [i, d] of docs.entries()) {
  const r = await checkDocument(d.doc, i === 0 ? probes : []);
  out.documents.push({ file: d.file, errors: r.errors });
  if (i === 0) out.probes = r.probes;
}
// exitCode, not exit(): a pipe gets the whole output before the process ends.
process.exitCode = out.documents.some((d) => d.errors.length) ? 1 : 0;
process.stdout.write(JSON.stringify(out, null, 2) + '\n');
