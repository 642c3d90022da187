#!/usr/bin/env node
/*
 * Parse and bind many KQL queries with Kusto.Language, the official KQL parser and binder
 * (npm @kusto/language-service-next), in ONE process.
 *
 * Why: duckdb-kql matches column names case-insensitively and cannot run the Log Analytics
 * rendering at all, so only Kusto.Language catches a misspelt or mis-cased column, a type error or
 * a broken prelude. Loading the bridge costs a few hundred milliseconds, so callers batch every
 * query into one run (see devtools/kql_check.py).
 *
 * stdin (JSON):
 *   {
 *     "schemas": {"ah": {Table: [{"name", "type"}]}, "la": {...}},   // or whole schema files
 *                                                                    // ({"tables": {...}});
 *                                                                    // absent: the repo's files
 *     "literals": false,              // default for every query: list string literal tokens
 *     "queries": [{"id", "dialect": "ah" | "la", "text", "literals"?: bool,
 *                  "schema"?: "<a key of schemas>"}]   // bind against that schema, not the dialect's
 *   }
 * stdout (JSON):
 *   {"kustoLanguage": "<package version>", "results": [{
 *     "id", "dialect",
 *     "errors":   [{"severity", "code", "message", "start", "end", "line", "column"}],
 *     "warnings": [... same shape, plus "source": "binder" | "analyzer"],
 *     "resultKind": "table" | "scalar" | null,
 *     "columns": [{"name", "type"}] | null,      // the query's output (table results)
 *     "scalarType": "<type>" | null,              // scalar results
 *     "literals": [{"text", "value", "start", "end", "parent", "compound"}]   // on request
 *   }]}
 * Offsets are code-point offsets into "text" (what Python's str indexing uses), end exclusive;
 * line and column are 1-based.
 *
 * Exit codes: 0 every query was analysed (whatever its diagnostics); 2 bad input;
 * 3 the Kusto.Language package is missing (run `npm ci` at the project root).
 */
"use strict";

const fs = require("fs");
const path = require("path");

const PACKAGE = "@kusto/language-service-next";
const PROJECT_ROOT = path.resolve(__dirname, "..");

function fail(code, message) {
  process.stderr.write(`validate_kql: ${message}\n`);
  process.exit(code);
}

/** Load the Bridge.NET runtime and Kusto.Language once; they install globals `Bridge`, `Kusto`. */
function loadKusto() {
  let pkgJson;
  try {
    pkgJson = require.resolve(`${PACKAGE}/package.json`, { paths: [PROJECT_ROOT, process.cwd()] });
  } catch (_err) {
    fail(3, `${PACKAGE} is not installed; run \`npm ci\` in ${PROJECT_ROOT}`);
  }
  const dir = path.dirname(pkgJson);
  require(path.join(dir, "bridge.min.js"));
  require(path.join(dir, "Kusto.Language.Bridge.min.js"));
  const version = JSON.parse(fs.readFileSync(pkgJson, "utf8")).version;
  return { K: global.Kusto.Language, version };
}

function listOf(netList) {
  const out = [];
  if (!netList) return out;
  for (let i = 0; i < netList.Count; i++) out.push(netList.getItem(i));
  return out;
}

/** A GlobalState whose default database holds the dialect's tables with typed columns. */
function buildGlobals(K, dialect, tables) {
  const S = K.Symbols;
  const symbols = [];
  for (const [table, columns] of Object.entries(tables)) {
    if (!Array.isArray(columns)) throw new Error(`schema ${dialect}: table ${table} has no column list`);
    const cols = columns.map((c) => {
      const type = S.ScalarTypes.GetSymbol(String(c.type));
      if (!type) throw new Error(`schema ${dialect}: ${table}.${c.name} has unknown type ${JSON.stringify(c.type)}`);
      return new S.ColumnSymbol(String(c.name), type, null, null, null, null);
    });
    symbols.push(new S.TableSymbol.$ctor4(table, cols));
  }
  const db = new S.DatabaseSymbol.ctor(`${dialect}_db`, symbols);
  return K.GlobalState.Default.WithDatabase(db);
}

function defaultSchemas() {
  const dir = path.join(PROJECT_ROOT, "grading", "hunting", "schemas");
  const out = {};
  for (const dialect of ["ah", "la"]) {
    const file = path.join(dir, `${dialect}.json`);
    if (fs.existsSync(file)) out[dialect] = JSON.parse(fs.readFileSync(file, "utf8"));
  }
  return out;
}

/** Maps UTF-16 offsets (what Kusto.Language reports) to code points, lines and columns. */
class Positions {
  constructor(text) {
    this.text = text;
    this.astral = /[\ud800-\udfff]/.test(text);
    this.cache = null;
  }
  build() {
    // Only texts with astral characters need a table; most queries are pure BMP.
    const t = this.text;
    const cp = new Int32Array(t.length + 1);
    let n = 0;
    for (let i = 0; i < t.length; i++) {
      cp[i] = n;
      const c = t.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < t.length) {
        const d = t.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          cp[i + 1] = n;
          i++;
        }
      }
      n++;
    }
    cp[t.length] = n;
    this.cache = cp;
  }
  codePoint(offset) {
    const o = Math.max(0, Math.min(offset, this.text.length));
    if (!this.astral) return o;
    if (!this.cache) this.build();
    return this.cache[o];
  }
  lineColumn(offset) {
    const before = this.text.slice(0, Math.max(0, Math.min(offset, this.text.length)));
    const lines = before.split(/\r\n|\r|\n/);
    return { line: lines.length, column: Array.from(lines[lines.length - 1]).length + 1 };
  }
}

function diagnostic(d, pos, source) {
  const start = d.Start;
  const end = d.End;
  const { line, column } = pos.lineColumn(start);
  const out = {
    severity: String(d.Severity),
    code: d.Code,
    message: d.Message,
    start: pos.codePoint(start),
    end: pos.codePoint(end),
    line,
    column,
  };
  if (source) out.source = source;
  return out;
}

function typeName(symbol) {
  return symbol ? String(symbol.Name) : "unknown";
}

function resultOf(K, code) {
  const rt = code.ResultType;
  if (!rt) return { resultKind: null, columns: null, scalarType: null };
  if (rt.Kind === K.Symbols.SymbolKind.Table) {
    const columns = listOf(rt.Columns).map((c) => ({ name: String(c.Name), type: typeName(c.Type) }));
    return { resultKind: "table", columns, scalarType: null };
  }
  return { resultKind: "scalar", columns: null, scalarType: typeName(rt) };
}

function stringLiterals(K, code, pos) {
  const SK = K.Syntax.SyntaxKind;
  const out = [];
  code.Syntax.WalkTokens((tok) => {
    if (tok.Kind !== SK.StringLiteralToken) return;
    const start = tok.TextStart;
    const parentKind = tok.Parent ? System.Enum.toString(SK, tok.Parent.Kind) : null;
    out.push({
      text: tok.Text,
      value: tok.ValueText,
      start: pos.codePoint(start),
      end: pos.codePoint(start + tok.Text.length),
      parent: parentKind,
      compound: tok.Parent ? tok.Parent.Kind === SK.CompoundStringLiteralExpression : false,
    });
  });
  return out;
}

function analyse(K, globals, query, wantLiterals) {
  const pos = new Positions(query.text);
  const code = K.KustoCode.ParseAndAnalyze(query.text, globals);
  const errors = [];
  const warnings = [];
  for (const d of listOf(code.GetDiagnostics())) {
    if (String(d.Severity) === "Error") errors.push(diagnostic(d, pos));
    else warnings.push(diagnostic(d, pos, "binder"));
  }
  const service = new K.Editor.KustoCodeService.ctor(code);
  for (const d of listOf(service.GetAnalyzerDiagnostics(true))) {
    warnings.push(diagnostic(d, pos, "analyzer"));
  }
  const out = { id: query.id, dialect: query.dialect, errors, warnings, ...resultOf(K, code) };
  if (wantLiterals) out.literals = stringLiterals(K, code, pos);
  return out;
}

function readInput() {
  let request;
  try {
    request = JSON.parse(fs.readFileSync(0, "utf8"));
  } catch (err) {
    fail(2, `stdin is not JSON: ${err.message}`);
  }
  if (!request || !Array.isArray(request.queries)) fail(2, 'expected {"queries": [...]} on stdin');
  request.queries.forEach((q, i) => {
    if (!q || typeof q.text !== "string" || typeof q.dialect !== "string") {
      fail(2, `queries[${i}] needs a string "text" and a "dialect"`);
    }
  });
  return request;
}

function main() {
  const request = readInput();
  const { K, version } = loadKusto();
  const schemas = request.schemas || defaultSchemas();
  const globals = {};
  try {
    for (const [dialect, schema] of Object.entries(schemas)) {
      globals[dialect] = buildGlobals(K, dialect, schema && schema.tables ? schema.tables : schema);
    }
  } catch (err) {
    fail(2, err.message);
  }
  request.queries.forEach((q, i) => {
    const key = q.schema || q.dialect;
    if (!globals[key]) fail(2, `queries[${i}]: no schema ${JSON.stringify(key)}`);
  });
  const results = request.queries.map((q) => {
    const id = q.id === undefined ? null : q.id;
    const wantLiterals = q.literals === undefined ? Boolean(request.literals) : Boolean(q.literals);
    try {
      return analyse(K, globals[q.schema || q.dialect], { ...q, id }, wantLiterals);
    } catch (err) {
      return { id, dialect: q.dialect, crash: String((err && err.stack) || err) };
    }
  });
  process.stdout.write(JSON.stringify({ kustoLanguage: version, results }));
}

main();
