/**
 * Across regions: two clients write different content
 * under one Yjs client id and clock at two regions at once. The regions must
 * see the difference (digests cover content), resolve it the same way
 * everywhere within an anti-entropy round, and keep the losing state as a
 * conflict record that the API shows and `/v1/sync` counts.
 */
import * as Y from 'yjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, startTestCluster, syncStatus, waitFor } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;
let cluster: Cluster;
const A = 'ap-south';
const B = 'eu-west';

beforeAll(async () => {
  cluster = await startTestCluster([A, B]);
}, 60_000);

afterAll(async () => {
  await cluster.dispose();
});

function collidingUpdate(text: string): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = 31337;
  doc.getMap('root').set('title', text);
  return Y.encodeStateAsUpdate(doc);
}

function clientUpdate(clientId: number, write: (doc: Y.Doc) => void): Uint8Array {
  const doc = new Y.Doc();
  doc.clientID = clientId;
  write(doc);
  return Y.encodeStateAsUpdate(doc);
}

async function reloadedAt(region: string): Promise<number> {
  const text = await (await fetch(`${cluster.url(region)}/metrics`)).text();
  return Number(/^meridian_documents_reloaded_total(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
}

async function postYjs(region: string, path: string, update: Uint8Array): Promise<number> {
  const res = await fetch(`${cluster.url(region)}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from(update),
  });
  return res.status;
}

describe('a Yjs client-id collision between regions', () => {
  it('converges to one content everywhere and keeps the other as a conflict at both regions', async () => {
    const path = '/v1/docs/notes/collide';
    // The regions cannot see each other's write: both accept theirs.
    cluster.isolate(A);
    await waitFor('A isolated', async () => (await syncStatus(cluster.url(A))).isolated);
    expect(await postYjs(A, `${path}/yjs`, collidingUpdate('written at A'))).toBe(200);
    expect(await postYjs(B, `${path}/yjs`, collidingUpdate('written at B'))).toBe(200);
    cluster.heal();

    const converged = await waitFor('one content everywhere', async () => {
      const [a, b] = await Promise.all([http<{ title: string }>(`${cluster.url(A)}${path}`), http<{ title: string }>(`${cluster.url(B)}${path}`)]);
      const [sa, sb] = await Promise.all([syncStatus(cluster.url(A)), syncStatus(cluster.url(B))]);
      const same = a.body.title === b.body.title && sa.digest === sb.digest && sa.conflicts > 0 && sb.conflicts > 0;
      return same ? a.body.title : undefined;
    }, 30_000);
    expect(['written at A', 'written at B']).toContain(converged);

    const loser = converged === 'written at A' ? 'written at B' : 'written at A';
    for (const region of [A, B]) {
      const res = await http<{ conflicts: { value: { title: string }; winner: string; yjs: string }[] }>(`${cluster.url(region)}${path}/conflicts`);
      expect(res.status).toBe(200);
      expect(res.body.conflicts.map((c) => c.value.title)).toContain(loser);
      const lost = new Y.Doc();
      Y.applyUpdate(lost, Buffer.from(res.body.conflicts[0]!.yjs, 'base64'));
      expect(lost.getMap('root').get('title')).toBe(loser);
    }
    const metrics = await (await fetch(`${cluster.url(A)}/metrics`)).text();
    expect(metrics).toMatch(/^meridian_conflicts_total(\{[^}]*\})? [1-9]/m);
  }, 60_000);

  // The longer update reaches the region holding the shorter one: Yjs skips
  // the clocks that region holds and splices the rest of the struct next to
  // its own content, so its document is no longer what its own state
  // reloads to. Either region may be the one that runs the anti-entropy
  // round. With these values that document's content sorts first, so it
  // wins the conflict rule as it stands live.
  for (const longAt of [A, B]) {
    it(`converges when the colliding updates differ in length (the longer one written at ${longAt})`, async () => {
      const path = `/v1/docs/notes/splice-${longAt}`;
      const long = clientUpdate(4242, (doc) => {
        doc.getText('t').insert(0, 'XY');
        doc.getMap('root').set('b', 'x');
      });
      const short = clientUpdate(4242, (doc) => doc.getMap('root').set('a', 2));
      const reloadedBefore = await reloadedAt(A) + await reloadedAt(B);
      cluster.isolate(A);
      await waitFor('A isolated', async () => (await syncStatus(cluster.url(A))).isolated);
      expect(await postYjs(longAt, `${path}/yjs`, long)).toBe(200);
      expect(await postYjs(longAt === A ? B : A, `${path}/yjs`, short)).toBe(200);
      cluster.heal();

      await waitFor('one content and one digest everywhere', async () => {
        const reads = await Promise.all([A, B].map((r) => http(`${cluster.url(r)}${path}`)));
        const syncs = await Promise.all([A, B].map((r) => syncStatus(cluster.url(r))));
        const same = JSON.stringify(reads[0]!.body) === JSON.stringify(reads[1]!.body) && syncs[0]!.digest === syncs[1]!.digest;
        return same && syncs.every((s) => s.pendingDocs === 0);
      }, 30_000);
      // The region that took the rest of the longer write reloaded its document, visibly.
      expect(await reloadedAt(A) + await reloadedAt(B)).toBeGreaterThan(reloadedBefore);
    }, 60_000);
  }

  it('is resolved while a client writes another document steadily over links of ordinary latency', async () => {
    const path = '/v1/docs/notes/collide-under-writes';
    cluster.isolate(A);
    await waitFor('A isolated', async () => (await syncStatus(cluster.url(A))).isolated);
    expect(await postYjs(A, `${path}/yjs`, collidingUpdate('written at A'))).toBe(200);
    expect(await postYjs(B, `${path}/yjs`, collidingUpdate('written at B'))).toBe(200);
    // About 12 writes a second at each region over links of 60 ms each way: an entry is in flight at every tick of
    // anti-entropy, which compared only once nothing was, so the conflict stayed for as long as the writes went on.
    let writing = true;
    const writers = [A, B].map(async (region) => {
      for (let n = 0; writing; n++) {
        expect((await http(`${cluster.url(region)}/v1/docs/load/${region}`, { method: 'PUT', body: { n } })).status).toBe(200);
        await new Promise((r) => setTimeout(r, 80));
      }
    });
    try {
      cluster.setFault({ kind: 'latency', ms: 60 });
      await waitFor('one content at both while the writes go on', async () => {
        const reads = await Promise.all([A, B].map((r) => http<{ title: string }>(`${cluster.url(r)}${path}`)));
        return reads[0]!.body.title === reads[1]!.body.title ? true : undefined;
      }, 20_000);
    } finally {
      writing = false;
      await Promise.all(writers);
      cluster.heal();
    }
  }, 60_000);

  it('renders pages of a large lost state as reads of a large document are: shared, and a few per caller', async () => {
    const path = '/v1/docs/notes/collide-large';
    // About 1 MB each, so that decoding and rendering a lost state is slow.
    const large = (text: string): Uint8Array => clientUpdate(27182, (doc) => doc.getMap('root').set('title', text.repeat(900_000)));
    cluster.isolate(A);
    await waitFor('A isolated', async () => (await syncStatus(cluster.url(A))).isolated);
    expect(await postYjs(A, `${path}/yjs`, large('a'))).toBe(200);
    expect(await postYjs(B, `${path}/yjs`, large('b'))).toBe(200);
    cluster.heal();
    await waitFor('a conflict kept at A', async () => {
      const res = await http<{ conflicts: unknown[] }>(`${cluster.url(A)}${path}/conflicts`);
      return res.status === 200 && res.body.conflicts.length > 0 ? true : undefined;
    }, 30_000);
    // The page just read was slow: the next ones wait their turn. One caller
    // (this process, by address) asks for one page many times and three others once.
    const page = (query: string) => fetch(`${cluster.url(A)}${path}/conflicts?${query}`).then(async (r) => ({ status: r.status, body: await r.text() }));
    const answers = await Promise.all([...Array.from({ length: 5 }, () => page('limit=1')), page('limit=2'), page('limit=3'), page('limit=4')]);
    // The five asking for one page share its render (or its refusal).
    const one = answers.slice(0, 5);
    expect(new Set(one.map((r) => `${r.status} ${r.body}`)).size).toBe(1);
    // Of the four pages asked for, the caller waits for two; the others are refused, saying why.
    const byPage = [one[0]!, ...answers.slice(5)];
    expect(byPage.filter((r) => r.status === 200)).toHaveLength(2);
    const refused = byPage.filter((r) => r.status === 503);
    expect(refused).toHaveLength(2);
    for (const r of refused) expect(JSON.parse(r.body)).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/this caller already waits/) });
  }, 60_000);

  it('answers 404 for the conflicts of a document that does not exist', async () => {
    expect((await http(`${cluster.url(A)}/v1/docs/notes/nothing-here/conflicts`)).status).toBe(404);
  });
});

// Here the rest of the longer write (a text inserted at its start) takes
// its place from a map entry the shorter one wrote: Yjs files it under the
// map, and once the map is read, an item it no longer reaches keeps a parent
// the document does not hold. Every encoding of such a document throws, so a
// region holding it could commit no batch touching it and send it to no
// peer. A third region, which takes both writes from its peers, is where it
// showed. A document is reloaded as soon as such an update is applied.
describe('a Yjs client-id collision at two of three regions', () => {
  let three: Cluster;
  beforeAll(async () => {
    three = await startTestCluster([A, B, 'us-east']);
  }, 60_000);
  afterAll(async () => {
    await three.dispose();
  });

  // Three contents under one id and clock, one per region: each region is
  // offered two other states at once, by two links. Building and digesting
  // both states of a document this large held a region over a second; the
  // render thread judges them, and the write path takes a verdict only if
  // the document has not changed since (a replacement by one peer changes it
  // for the other's verdict).
  it('resolves a large document\'s conflict among three contents the same everywhere, judged on the render thread', async () => {
    const regions = [A, B, 'us-east'];
    const path = '/v1/docs/notes/collide-structured';
    for (let part = 0; part < 5; part++) {
      const patch = Object.fromEntries(Array.from({ length: 4_999 }, (_, i) => [`k${part}_${i}`, i]));
      expect((await http(`${three.url(A)}${path}`, { method: 'PATCH', body: patch })).status).toBe(200);
    }
    await waitFor('the document everywhere', async () => {
      const syncs = await Promise.all(regions.map((r) => syncStatus(three.url(r))));
      return new Set(syncs.map((s) => s.digest)).size === 1 && syncs.every((s) => s.agree) ? true : undefined;
    }, 60_000);
    const judged = async (region: string): Promise<number> => {
      const text = await (await fetch(`${three.url(region)}/metrics`)).text();
      return Number(/^meridian_conflicts_judged_off_loop_total(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0);
    };
    const judgedBefore = await Promise.all(regions.map(judged));
    three.isolate(A);
    three.isolate(B);
    await waitFor('every region alone', async () => (await Promise.all(regions.map((r) => syncStatus(three.url(r))))).every((s) => s.isolated));
    for (const region of regions) {
      const update = clientUpdate(4545, (doc) => doc.getMap('root').set('title', `written at ${region}`));
      const res = await fetch(`${three.url(region)}${path}/yjs`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(update) });
      expect(res.status).toBe(200);
    }
    three.heal();
    const title = await waitFor('one content everywhere', async () => {
      const reads = await Promise.all(regions.map((r) => http<Record<string, unknown>>(`${three.url(r)}${path}`)));
      const syncs = await Promise.all(regions.map((r) => syncStatus(three.url(r))));
      const one = new Set(reads.map((r) => JSON.stringify(r.body))).size === 1 && new Set(syncs.map((s) => s.digest)).size === 1;
      return one && syncs.every((s) => s.agree && s.conflicts > 0) ? reads[0]!.body.title : undefined;
    }, 60_000);
    const value = (await http<Record<string, unknown>>(`${three.url('us-east')}${path}`)).body;
    expect(Object.keys(value)).toHaveLength(5 * 4_999 + 1);
    // Every other content is kept as a lost state, at the regions that held it at least.
    const lost = new Set<string>();
    for (const region of regions) {
      const res = await http<{ conflicts: { value: { title: string } }[] }>(`${three.url(region)}${path}/conflicts`);
      for (const c of res.body.conflicts) lost.add(c.value.title);
    }
    expect([...lost].sort()).toEqual(regions.map((r) => `written at ${r}`).filter((t) => t !== title).sort());
    const judgedAfter = await Promise.all(regions.map(judged));
    expect(judgedAfter.every((n, i) => n > judgedBefore[i]!)).toBe(true);
    for (const region of regions) expect((await http(`${three.url(region)}${path}`, { method: 'PATCH', body: { [`after-${region}`]: 1 } })).status).toBe(200);
  }, 120_000);

  it('converges and keeps taking writes when the rest of the longer write splices into a map', async () => {
    const regions = [A, B, 'us-east'];
    const short = clientUpdate(4343, (doc) => {
      doc.getMap('root').set('a', 'x');
      doc.getMap('root').set('b', 'x');
    });
    const long = clientUpdate(4343, (doc) => {
      doc.getText('t').insert(0, 'a');
      doc.getText('t').insert(0, 'XY');
    });
    // A few documents: which region takes which write first is a race.
    const paths = [0, 1, 2, 3].map((i) => `/v1/docs/notes/splice-map-${i}`);
    for (const path of paths) {
      const post = (region: string, update: Uint8Array) => fetch(`${three.url(region)}${path}/yjs`, {
        method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(update),
      });
      const answers = await Promise.all([post(B, short), post('us-east', long)]);
      expect(answers.map((r) => r.status)).toEqual([200, 200]);
    }
    const agree = async (): Promise<boolean> => {
      const syncs = await Promise.all(regions.map((r) => syncStatus(three.url(r))));
      if (new Set(syncs.map((s) => s.digest)).size !== 1 || syncs.some((s) => s.pendingDocs > 0)) return false;
      for (const path of paths) {
        const reads = await Promise.all(regions.map((r) => http(`${three.url(r)}${path}`)));
        if (new Set(reads.map((r) => JSON.stringify(r.body))).size !== 1) return false;
      }
      return true;
    };
    await waitFor('one content and one digest everywhere', agree, 30_000);
    // Every region still encodes each document and takes writes to it.
    for (const region of regions) {
      for (const path of paths) {
        expect((await fetch(`${three.url(region)}${path}/yjs`)).status).toBe(200);
        expect((await http(`${three.url(region)}${path}`, { method: 'PATCH', body: { [`after-${region}`]: 1 } })).status).toBe(200);
      }
    }
    await waitFor('the later writes everywhere', agree, 30_000);
  }, 90_000);
});
