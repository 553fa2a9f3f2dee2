// A Node.js client of weir over Connect: it follows a stream with Tail,
// pushes a few records with PushStream, prints them as Tail delivers them,
// and counts them by severity with Query.
//
//   npm ci
//   node weir.js --server http://127.0.0.1:7070 --stream node_example
//
// With API keys (docs/security.md), set WEIR_TOKEN to a key with the
// ingest, tail and query roles. The code under gen/ is generated from
// proto/weir/v1 by protoc-gen-es (buf.gen.yaml); its .d.ts files give
// editors the types that the JSDoc comments here refer to.

import { parseArgs } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AckLevel, ErrorCode, IngestService } from "./gen/weir/v1/ingest_pb.js";
import { QueryService, ResultFormat } from "./gen/weir/v1/query_pb.js";
import { TailService } from "./gen/weir/v1/tail_pb.js";

/** @typedef {import("@connectrpc/connect").Interceptor} Interceptor */
/** @typedef {import("./gen/weir/v1/record_pb.js").LogRecord} LogRecord */
/** @typedef {import("@bufbuild/protobuf").MessageInitShape<typeof import("./gen/weir/v1/record_pb.js").LogRecordSchema>} LogRecordInit */

const { values: args } = parseArgs({
  options: {
    server: { type: "string", default: "http://127.0.0.1:7070" },
    stream: { type: "string", default: "node_example" },
  },
});
const stream = /** @type {string} */ (args.stream);

/**
 * Adds the API key in WEIR_TOKEN, if set, to every request.
 * @type {Interceptor}
 */
const bearer = (next) => (req) => {
  const token = process.env.WEIR_TOKEN;
  if (token) {
    req.header.set("Authorization", `Bearer ${token}`);
  }
  return next(req);
};

// PushStream is a bidirectional stream: it needs HTTP/2, which Node
// speaks in clear text (h2c) to an http:// server.
const transport = createConnectTransport({
  baseUrl: /** @type {string} */ (args.server),
  httpVersion: "2",
  interceptors: [bearer],
});
const ingest = createClient(IngestService, transport);
const query = createClient(QueryService, transport);
const tail = createClient(TailService, transport);

/**
 * A record with a service name and an attribute, as a log shipper sends it.
 * @param {string} body
 * @param {string} severity
 * @returns {LogRecordInit}
 */
function logRecord(body, severity) {
  return {
    timeUnixNano: BigInt(Date.now()) * 1_000_000n,
    severityText: severity,
    body,
    attributes: [{ key: "example", value: { value: { case: "stringValue", value: "node" } } }],
    resource: [{ key: "service.name", value: { value: { case: "stringValue", value: "node-example" } } }],
  };
}

/** The batches this example pushes, by batch id. */
const batches = new Map([
  [1n, [logRecord("hello from node 1", "INFO"), logRecord("hello from node 2", "INFO"), logRecord("disk almost full", "WARN")]],
  [2n, [logRecord("hello from node 3", "INFO"), logRecord("retrying upload", "WARN")]],
]);
const total = [...batches.values()].reduce((n, b) => n + b.length, 0);

/**
 * Pushes every batch over one PushStream at the DURABLE level and checks
 * each acknowledgement. A rejected batch does not end the stream; this
 * example gives up on the first one.
 */
async function push() {
  async function* requests() {
    for (const [batchId, records] of batches) {
      yield { batchId, stream, records, ackLevel: AckLevel.DURABLE };
    }
  }
  for await (const ack of ingest.pushStream(requests())) {
    if (ack.code !== ErrorCode.UNSPECIFIED) {
      // ErrorCode has Connect's numbers: Code[ack.code] is its name.
      throw new ConnectError(`batch ${ack.batchId} rejected: ${ack.errorMessage}`, /** @type {Code} */ (/** @type {number} */ (ack.code)));
    }
    const want = batches.get(ack.batchId)?.length;
    if (ack.accepted !== want) {
      throw new Error(`batch ${ack.batchId}: ${ack.accepted} of ${want} records accepted`);
    }
    console.log(`ack ${ack.batchId} accepted=${ack.accepted} level=${AckLevel[ack.ackLevel]}`);
  }
}

/**
 * Runs one statement and returns its rows, decoded from JSON lines: each
 * response's data holds whole rows.
 * @param {string} sql
 * @returns {Promise<Record<string, unknown>[]>}
 */
async function sql(sql) {
  const rows = [];
  const text = new TextDecoder();
  for await (const res of query.query({ sql, format: ResultFormat.JSON })) {
    for (const line of text.decode(res.data).split("\n")) {
      if (line !== "") {
        rows.push(JSON.parse(line));
      }
    }
  }
  return rows;
}

async function main() {
  // Follow the stream first: once the first (empty) response arrives,
  // every record pushed after it is delivered or counted as missed.
  const stop = new AbortController();
  const follow = tail.tail({ streams: [stream] }, { signal: stop.signal })[Symbol.asyncIterator]();
  await follow.next();

  await push();

  /** @type {{offset: bigint, record: LogRecord}[]} */
  const seen = [];
  while (seen.length < total) {
    const { value, done } = await follow.next();
    if (done) {
      throw new Error(`tail ended after ${seen.length} of ${total} records`);
    }
    if (value.missed > 0n) {
      throw new Error(`tail missed ${value.missed} records`);
    }
    for (const r of value.records) {
      if (r.record) {
        seen.push({ offset: r.offset, record: r.record });
      }
    }
  }
  stop.abort();
  for (const { offset, record } of seen) {
    console.log(`tail ${offset} ${record.severityText} ${record.body}`);
  }

  // Records are visible to SQL within a second of their acknowledgement.
  const q = `SELECT severity_text, count(*) AS n FROM ${stream} GROUP BY 1 ORDER BY 1`;
  const deadline = Date.now() + 10_000;
  let rows = await sql(q);
  while (rows.reduce((n, r) => n + Number(r.n), 0) < total && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    rows = await sql(q);
  }
  for (const row of rows) {
    console.log(`query ${JSON.stringify(row)}`);
  }
}

main().catch((err) => {
  const e = ConnectError.from(err);
  console.error(`weir example: ${e.code ? Code[e.code] + ": " : ""}${e.rawMessage}`);
  process.exitCode = 1;
});
