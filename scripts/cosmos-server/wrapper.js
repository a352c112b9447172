#!/usr/bin/env node
// The Cosmos DB protocol server the tests use: @vercel/cosmosdb-server 1.0.1
// (in-memory), patched where the Rust SDK (azure_data_cosmos 1.x) needs the
// real service's behaviour, plus fault injection that tests switch at run time.
//
//   node wrapper.js --port P --control-port C (--cert CERT.pem --key KEY.pem | --no-ssl)
//                   [--account-key BASE64]
//
// With --account-key, requests must carry a valid master-key signature (as the
// service checks): a wrong key answers 401. The package itself checks nothing.
//
// The control port (HTTP, 127.0.0.1 only) takes the faults as JSON:
//   curl -s -X POST http://127.0.0.1:C/faults -d '{"throttle_every":3,"retry_after_ms":50}'
//   curl -s http://127.0.0.1:C/faults          -> current faults and counters
// Fields: throttle_every N (every Nth document write answers 429, 0 = off),
// retry_after_ms (x-ms-retry-after-ms on those 429s), unavailable (true: every
// document write answers 503), discard_writes (true: transactional batches
// are answered as done, each operation 201, without storing anything; for
// benchmarks: storing costs this server about 30 us of CPU a document, six
// times the client's own work, which a remote service never takes from the
// machine under test). POST {} turns all faults off; counters are reset by
// every POST.
// Counters: connections (new client connections: shows keep-alive works),
// document_writes (retries included), throttled, unavailable, unauthorized,
// discarded (operations of discarded batches).
//
// Patching works by replacing handler modules' exports before the package's
// router loads them (the router copies each handler when it is first required).
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const http = require("http");
const lib = (name) => require(`@vercel/cosmosdb-server/lib/${name}`);

const args = { port: 8081, controlPort: 0, ssl: true };
for (let argv = process.argv.slice(2); argv.length; ) {
  const flag = argv.shift();
  if (flag === "--port") args.port = Number(argv.shift());
  else if (flag === "--control-port") args.controlPort = Number(argv.shift());
  else if (flag === "--cert") args.cert = argv.shift();
  else if (flag === "--key") args.key = argv.shift();
  else if (flag === "--no-ssl") args.ssl = false;
  else if (flag === "--account-key") args.accountKey = Buffer.from(argv.shift(), "base64");
  else throw new Error(`unknown argument ${flag}`);
}

// Fix 1: partition-key ranges. The package creates the single range with the
// number 0 as its id; the real service (and the Rust SDK's routing map) uses
// strings, and the SDK answers a numeric id with 503 / sub-status 20305
// ("partition key range not found") on every document operation.
const pkranges = lib("handler/read-partition-key-ranges");
const readPkranges = pkranges.default;
pkranges.default = async (...a) => {
  const body = await readPkranges(...a);
  if (body && Array.isArray(body.PartitionKeyRanges)) {
    body.PartitionKeyRanges = body.PartitionKeyRanges.map((r) => ({ ...r, id: String(r.id) }));
  }
  return body;
};

// Fix 2: reading a missing document. With a partition-key header the package
// dereferences the (undefined) document and throws, which its router turns
// into 500; the SDK then retries and reports a server error. The service
// answers 404 NotFound, which is what callers test for.
const { parsePartitionKey } = lib("utils/get-partition-from-header");
const readDocument = lib("handler/read-document");
const readDocumentOriginal = readDocument.default;
readDocument.default = async (account, req, res, params) => {
  const collection = account.database(params.dbId).collection(params.collId);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (collection.read() && header) {
    let exists = true;
    try {
      exists = Boolean(collection.document(params.docId, parsePartitionKey(header, params.docId)).read());
    } catch (_) {
      // an unparsable header: let the package answer as it does
    }
    if (!exists) {
      res.statusCode = 404;
      return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
    }
  }
  return readDocumentOriginal(account, req, res, params);
};

// Fix 3: the account's endpoints. The package always advertises
// https://host:port/ as the read and write location; the SDK then routes every
// request there, so in --no-ssl mode it must say http://.
const readMeta = lib("handler/read-meta");
const readMetaOriginal = readMeta.default;
readMeta.default = (...a) => {
  const body = readMetaOriginal(...a);
  if (args.ssl) return body;
  const http_ = (l) => ({ ...l, databaseAccountEndpoint: l.databaseAccountEndpoint.replace(/^https:/, "http:") });
  return { ...body, writableLocations: body.writableLocations.map(http_), readableLocations: body.readableLocations.map(http_) };
};

// Fix 5: transactional batches. The package reads each operation's
// partition key from the operation (as the JavaScript SDK's bulk API sends
// it) and fails the whole request when it is missing; the batch protocol,
// and the Rust SDK, send it once, in the x-ms-documentdb-partitionkey header.
const json = lib("json");
const readJson = json.default;
json.default = async (req) => {
  const body = await readJson(req);
  const header = req.headers["x-ms-documentdb-partitionkey"];
  if (Array.isArray(body) && header) {
    for (const operation of body) {
      if (operation && operation.partitionKey === undefined) operation.partitionKey = header;
    }
  }
  return body;
};

// Fix 6: minimal responses. With `Prefer: return=minimal` (the SDK's
// default for writes) the service leaves each written document out of a
// batch's response; the package echoes every one, which the client then
// has to read.
const batchDocuments = lib("handler/batch-documents");
const batchDocumentsOriginal = batchDocuments.default;
batchDocuments.default = async (account, req, res, params) => {
  const body = await batchDocumentsOriginal(account, req, res, params);
  const minimal = String(req.headers.prefer || "").toLowerCase().includes("return=minimal");
  if (!minimal || !Array.isArray(body)) return body;
  return body.map(({ resourceBody, ...result }) => result);
};

const { createHttpServer, createHttpsServer } = require("@vercel/cosmosdb-server");

// Fix 4: keep-alive. Without `keepAlive` the package answers `connection:
// close` on every response, so the SDK opens a new TCP + TLS connection per
// request. Node also closes idle connections after 5 s, while the SDK's pool
// keeps them for longer and would send on a closed socket: keep them 10 min.
const server = args.ssl
  ? createHttpsServer({ keepAlive: true, cert: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) })
  : createHttpServer({ keepAlive: true });
server.keepAliveTimeout = 600_000;
server.headersTimeout = 601_000;

// Fault injection, in front of the package's request handler.
const NO_FAULTS = { throttle_every: 0, retry_after_ms: 100, unavailable: false, discard_writes: false };
const faults = { ...NO_FAULTS };
const counters = { connections: 0, document_writes: 0, throttled: 0, unavailable: 0, unauthorized: 0, discarded: 0 };
// New client connections (TCP, or TLS handshakes): shows whether keep-alive works.
server.on(args.ssl ? "secureConnection" : "connection", () => (counters.connections += 1));

// A document write: create/upsert/batch (POST .../docs that is not a query),
// replace (PUT), patch (PATCH) or delete (DELETE) of .../docs/ID.
function isDocumentWrite(req) {
  const path = req.url.split("?")[0].replace(/\/+$/, "");
  const isQuery = req.headers["x-ms-documentdb-isquery"] === "true" || req.headers["content-type"] === "application/query+json";
  if (req.method === "POST") return /\/docs$/.test(path) && !isQuery;
  return ["PUT", "PATCH", "DELETE"].includes(req.method) && /\/docs\/[^/]+$/.test(path);
}

// The master-key signature: base64(HMAC-SHA256(key, "verb\ntype\nlink\ndate\n\n")),
// sent URL-encoded as "type=master&ver=1.0&sig=...". The resource type is the
// last collection name in the path, the link the path up to the last id.
function signatureValid(req) {
  const parts = req.url.split("?")[0].split("/").filter(Boolean).map(decodeURIComponent);
  const type = parts.length % 2 ? parts[parts.length - 1] : parts[parts.length - 2] || "";
  const link = (parts.length % 2 ? parts.slice(0, -1) : parts).join("/");
  const date = (req.headers["x-ms-date"] || req.headers.date || "").toLowerCase();
  const text = `${req.method.toLowerCase()}\n${type.toLowerCase()}\n${link}\n${date}\n\n`;
  const sig = crypto.createHmac("sha256", args.accountKey).update(text).digest("base64");
  let token = "";
  try {
    token = decodeURIComponent(req.headers.authorization || "");
  } catch (_) {
    return false;
  }
  return token === `type=master&ver=1.0&sig=${sig}`;
}

// What opens each operation of a transactional batch. Counting these is how
// a discarded batch's operations are counted: parsing the body would cost
// this server more than the client's whole write (a document holding an
// object whose first key is operationType would be miscounted).
const OPERATION = Buffer.from('{"operationType":');

// Answers a transactional batch as done without storing it (discard_writes).
function discardBatch(req, res) {
  const chunks = [];
  req.on("error", () => {}); // a client gone mid-body: nothing to answer
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    let operations = 0;
    for (let at = body.indexOf(OPERATION); at >= 0; at = body.indexOf(OPERATION, at + OPERATION.length)) operations += 1;
    counters.discarded += operations;
    answer(req, res, 200, { "x-ms-request-charge": String(operations) },
      Array.from({ length: operations }, () => ({ statusCode: 201, requestCharge: 1 })));
  });
}

function answer(req, res, status, headers, body) {
  req.resume(); // drain the request body so the connection stays usable
  res.writeHead(status, { "content-type": "application/json", "x-ms-activity-id": crypto.randomUUID(), ...headers });
  res.end(JSON.stringify(body));
}

const packageHandler = server.listeners("request")[0];
server.removeAllListeners("request");
server.on("request", (req, res) => {
  if (args.accountKey && !signatureValid(req)) {
    counters.unauthorized += 1;
    return answer(req, res, 401, {}, { code: "Unauthorized", message: "The input authorization token can't serve the request (wrapper.js: wrong key)." });
  }
  if (isDocumentWrite(req)) {
    counters.document_writes += 1;
    if (faults.unavailable) {
      counters.unavailable += 1;
      return answer(req, res, 503, {}, { code: "ServiceUnavailable", message: "injected by wrapper.js" });
    }
    if (faults.throttle_every > 0 && counters.document_writes % faults.throttle_every === 0) {
      counters.throttled += 1;
      // 3200: "request rate too large" (RU budget), the sub-status of ordinary throttling
      return answer(req, res, 429, { "x-ms-retry-after-ms": String(faults.retry_after_ms), "x-ms-substatus": "3200" },
        { code: "TooManyRequests", message: "Request rate is large (injected by wrapper.js)" });
    }
    if (faults.discard_writes && String(req.headers["x-ms-cosmos-is-batch-request"]).toLowerCase() === "true") {
      return discardBatch(req, res);
    }
  }
  packageHandler(req, res);
});

const control = http.createServer((req, res) => {
  let data = "";
  req.on("data", (c) => (data += c));
  req.on("end", () => {
    if (req.url !== "/faults" || !["GET", "POST"].includes(req.method)) {
      res.writeHead(404).end();
      return;
    }
    if (req.method === "POST") {
      let next;
      try {
        next = JSON.parse(data || "{}");
      } catch (err) {
        res.writeHead(400, { "content-type": "text/plain" }).end(`bad JSON: ${err.message}\n`);
        return;
      }
      Object.assign(faults, NO_FAULTS, next);
      Object.keys(counters).forEach((k) => (counters[k] = 0));
    }
    const body = JSON.stringify({ faults, counters }) + "\n";
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
  });
});

server.listen(args.port, "127.0.0.1", () => {
  control.listen(args.controlPort, "127.0.0.1", () => {
    console.log(`cosmos ${args.ssl ? "https" : "http"}://127.0.0.1:${server.address().port}/ control http://127.0.0.1:${control.address().port}/faults`);
  });
});

// Exit cleanly on SIGTERM (the run script's stop) and SIGINT.
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
