/**
 * Response shapes of the HTTP API, as JSON schemas (TypeBox), for the
 * OpenAPI document. Responses are serialized as they are (see `app.ts`), so
 * these describe and never filter; the shapes of the wire contract
 * (src/contract.ts) are checked against them at compile time below, and
 * test/openapi.test.ts validates real responses and every example.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { VERSION_HEADER, type DocSyncStatus, type SyncStatus } from '../contract.js';
import type { DocKey, RegionId, WriterId } from '../ids.js';

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Count = Type.Integer({ minimum: 0 });
const Ms = Type.Number({ minimum: 0, description: 'milliseconds' });

const VERSION_EXAMPLE = 'v1.AQx1cy1lYXN0fjM0YmQ0NWQ1NTUyNgU';

/** `meridian-version` on a response: the version token of what was read or written. */
const versionHeader = {
  [VERSION_HEADER]: { type: 'string', description: 'the version token of what was read or written' },
} as const;

/** The acknowledgement of a write; `version` is also in the `meridian-version` header. */
export const WriteAck = Type.Object(
  { version: Type.String({ description: 'opaque version token (`v1.` + base64url) covering this write' }) },
  { description: 'the write is durable in this region', examples: [{ version: VERSION_EXAMPLE }], headers: versionHeader },
);

/** A document as plain JSON. */
export const DocumentBody = Type.Object({}, {
  additionalProperties: true,
  description: 'the document as plain JSON (counters as numbers, sets as sorted arrays, texts as strings)',
  examples: [{ title: 'Q3 plan', views: 3, tags: ['draft'] }],
  headers: versionHeader,
});

/** A binary Yjs update. */
export const YjsUpdateBody = {
  description: 'the document, or what the state vector lacks, as a binary Yjs update',
  content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
  headers: versionHeader,
};

export const ListPage = Type.Object(
  { ids: Type.Array(Type.String()), next: Nullable(Type.String({ description: 'pass as `after` for the next page' })) },
  { description: 'one page of document ids, in id order', examples: [{ ids: ['a', 'b'], next: 'b' }, { ids: [], next: null }] },
);

const PeerStateSchema = Type.Union([Type.Literal('up'), Type.Literal('suspect'), Type.Literal('down')]);

const PeerStatusSchema = Type.Object({
  region: Type.String(),
  url: Type.String(),
  state: PeerStateSchema,
  rttMs: Nullable(Ms),
  lastSeenMs: Nullable(Ms),
  route: Type.String({ description: '`direct`, `via <region>` or `none`' }),
  lastError: Nullable(Type.String()),
  outbound: Type.Object({ pendingUpdates: Count, pendingBytes: Count, lagMs: Ms }),
  inbound: Type.Object({ pendingUpdates: Count, lagMs: Ms, quarantined: Count }),
  digest: Nullable(Type.String({ description: "the peer's region digest from its last heartbeat (kept after the link drops)" })),
  links: Type.Array(Type.Object({ region: Type.String(), state: PeerStateSchema }), {
    description: "the peer's own links, as its last heartbeat reported them",
  }),
  reportAgeMs: Nullable(Type.Number({ minimum: 0, description: 'age of that heartbeat, ms' })),
});

export const SyncStatusSchema = Type.Object({
  region: Type.String(),
  writer: Type.String({ description: 'this incarnation of the region: `<region>~<random>`' }),
  digest: Type.String({ description: 'equal in two regions exactly when they hold the same documents' }),
  isolated: Type.Boolean({ description: 'no peer is up; the region still serves reads and writes' }),
  pendingDocs: Count,
  conflicts: Count,
  agree: Type.Boolean({ description: "every peer is up, its last heartbeat carried this region's digest, and nothing is pending either way" }),
  peers: Type.Array(PeerStatusSchema),
}, {
  description: 'replication status of this region',
  examples: [{
    region: 'us-east', writer: 'us-east~34bd45d55526', digest: '9f2c', isolated: false, pendingDocs: 0, conflicts: 0, agree: true,
    peers: [{
      region: 'eu-west', url: 'http://eu-west:7102', state: 'up', rttMs: 0.4, lastSeenMs: 120, route: 'direct', lastError: null,
      outbound: { pendingUpdates: 0, pendingBytes: 0, lagMs: 0 }, inbound: { pendingUpdates: 0, lagMs: 0, quarantined: 0 },
      digest: '9f2c', links: [{ region: 'us-east', state: 'up' }, { region: 'ap-south', state: 'up' }], reportAgeMs: 120,
    }],
  }],
});

const Update = Type.Object({ origin: Type.String(), seq: Count });

export const DocSyncStatusSchema = Type.Object({
  doc: Type.String({ description: '`<collection>/<id>`' }),
  deleted: Type.Boolean(),
  latestLocal: Nullable(Update),
  latest: Type.Array(Type.Object({ origin: Type.String(), seq: Count, ts: Type.Number() })),
  regions: Type.Array(Type.Object({ region: Type.String(), hasLatest: Type.Boolean(), missingUpdates: Count, missingUpdatesCapped: Type.Boolean(), lagMs: Ms })),
}, {
  description: 'per region, whether it holds the latest version of this document as far as this region knows',
  examples: [{
    doc: 'notes/a', deleted: false, latestLocal: { origin: 'us-east~34bd45d55526', seq: 7 },
    latest: [{ origin: 'us-east~34bd45d55526', seq: 7, ts: 1767225600000 }],
    regions: [
      { region: 'us-east', hasLatest: true, missingUpdates: 0, missingUpdatesCapped: false, lagMs: 0 },
      { region: 'eu-west', hasLatest: false, missingUpdates: 1, missingUpdatesCapped: false, lagMs: 230 },
    ],
  }],
});

export const ConflictPage = Type.Object({
  conflicts: Type.Array(Type.Object({
    id: Count,
    at: Type.String({ format: 'date-time' }),
    winner: Type.String(),
    keptDigest: Type.String(),
    lostDigest: Type.String(),
    value: Type.Unknown({ description: 'the lost state as JSON' }),
    yjs: Type.String({ description: 'the lost state as a base64 Yjs update' }),
  })),
  next: Nullable(Count),
}, { description: 'states of the document that lost a content conflict here, oldest first', examples: [{ conflicts: [], next: null }] });

export const Health = Type.Object({ status: Type.Literal('ok'), region: Type.String() }, {
  description: 'the process serves', examples: [{ status: 'ok', region: 'us-east' }],
});

export const Ready = Type.Object({ ready: Type.Literal(true), region: Type.String(), isolated: Type.Boolean() }, {
  description: 'ready for traffic', examples: [{ ready: true, region: 'us-east', isolated: false }],
});

export const NotReady = Type.Object({ ready: Type.Literal(false), region: Type.String(), reason: Type.String() }, {
  description: 'not ready: shutting down, holding writes until a peer answers, or the store refusing commits',
  examples: [{ ready: false, region: 'us-east', reason: 'shutting down' }],
});

export const MetricsText = {
  description: 'Prometheus text exposition',
  content: { 'text/plain': { schema: { type: 'string' } } },
};

// The contract's shapes and these schemas must agree: a change to one
// without the other fails to compile. Brands (RegionId, ...) are plain strings on the wire.
type Unbranded<T> = T extends RegionId | WriterId | DocKey ? string
  : T extends (infer U)[] ? Unbranded<U>[]
    : T extends object ? { [K in keyof T]: Unbranded<T[K]> } : T;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const syncStatusAgrees: Same<Static<typeof SyncStatusSchema>, Unbranded<SyncStatus>> = true;
const docSyncStatusAgrees: Same<Static<typeof DocSyncStatusSchema>, Unbranded<DocSyncStatus>> = true;
void syncStatusAgrees;
void docSyncStatusAgrees;
