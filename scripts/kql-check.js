#!/usr/bin/env node
// Parses and analyses KQL queries with Microsoft's own Kusto parser (npm @kusto/language-service-next, the C#
// Kusto.Language compiled to JavaScript) against declared tables, and prints every diagnostic.
//
//   node scripts/kql-check.js input.json      (or the JSON on stdin)
//
// input:  {"tables": [{"name": "traces", "columns": [{"name": "timestamp", "type": "datetime"}, ...]}],
//          "parameters": {"Migration": "'m-1'"},          workbook placeholders {Name} replaced before parsing
//          "queries": [{"name": "...", "text": "..."}]}
// output: {"errors": N, "results": [{"name", "diagnostics": [{code, severity, message, line, column, snippet}]}]}
// exit:   0 no diagnostic at all (warnings included); 1 diagnostics; 2 bad input or the parser is not installed.
//
// The package is installed by scripts/install-tools.sh into .tools/; KQL_TOOLS overrides where to find it.
'use strict';
const fs = require('fs');
const path = require('path');

function fail(msg) {
  process.stderr.write('kql-check: ' + msg + '\n');
  process.exit(2);
}

const tools = process.env.KQL_TOOLS || path.join(__dirname, '..', '.tools', 'node_modules');
const pkg = path.join(tools, '@kusto', 'language-service-next');
try {
  // The Bridge.NET runtime first (it defines the globals the compiled library needs), then the library.
  require(path.join(pkg, 'bridge.min.js'));
  require(path.join(pkg, 'Kusto.Language.Bridge.min.js'));
} catch (e) {
  fail('cannot load @kusto/language-service-next from ' + tools + ' (run scripts/install-tools.sh): ' + e.message);
}
const KL = global.Kusto.Language;
const Sym = KL.Symbols;

let input;
try {
  input = JSON.parse(fs.readFileSync(process.argv[2] || 0, 'utf8'));
} catch (e) {
  fail('cannot read the input JSON: ' + e.message);
}
if (!Array.isArray(input.tables) || !Array.isArray(input.queries) || input.queries.length === 0) {
  fail('the input needs "tables" and a non-empty "queries"');
}

const tables = input.tables.map(t => {
  if (typeof t.name !== 'string' || !Array.isArray(t.columns)) fail('a table needs a name and columns');
  return new Sym.TableSymbol.$ctor4(t.name, t.columns.map(c => {
    const type = Sym.ScalarTypes.GetSymbol(String(c.type));
    if (!type) fail('column ' + t.name + '.' + c.name + ': unknown type ' + c.type);
    return new Sym.ColumnSymbol(c.name, type, null, null, null, null);
  }));
});
// Client parameters stay disallowed: a placeholder the input does not replace is a diagnostic (KS213).
const globals = KL.GlobalState.Default.WithDatabase(new Sym.DatabaseSymbol.ctor('db', tables));
const params = input.parameters || {};

function substitute(text) {
  return text.replace(/\{([A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_]+)?)\}/g,
    (m, name) => (Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : m));
}

let errors = 0;
const results = input.queries.map((q, i) => {
  const text = substitute(String(q.text || ''));
  const list = KL.KustoCode.ParseAndAnalyze(text, globals).GetDiagnostics();
  const diagnostics = [];
  for (let k = 0; k < list.Count; k++) {
    const d = list.getItem(k);
    const before = text.slice(0, d.Start).split('\n');
    diagnostics.push({
      code: d.Code, severity: d.Severity, message: d.Message,
      line: before.length, column: before[before.length - 1].length + 1,
      snippet: text.substr(d.Start, d.Length),
    });
  }
  errors += diagnostics.length;
  return { name: q.name || 'query ' + i, diagnostics };
});
process.stdout.write(JSON.stringify({ errors, results }, null, 2) + '\n');
process.exit(errors === 0 ? 0 : 1);
