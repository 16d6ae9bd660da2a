/**
 * One write can neither stop replication nor freeze
 * a region. Real region processes, real sockets, real SQLite files.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { http, startTestCluster, syncStatus, waitFor, waitForConvergence } from './helpers/cluster.js';

type Cluster = Awaited<ReturnType<typeof startTestCluster>>;

/** The body of the attack's reproduction: ~850 KB of empty objects. */
function emptyObjects(count: number, prefix = 'k'): Record<string, object> {
  const body: Record<string, object> = {};
  for (let i = 0; i < count; i++) body[`${prefix}${i.toString(36)}`] = {};
  return body;
}

async function putRaw(url: string, json: string): Promise<number> {
  const res = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: json });
  await res.arrayBuffer();
  return res.status;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

describe('the work and size of one write are bounded', () => {
  let cluster: Cluster;
  let url: string;

  beforeAll(async () => {
    // Peers accept updates of at most 256 KiB here; the body limit stays 1 MiB.
    cluster = await startTestCluster(['solo'], { limits: { yjsUpdateBytes: 256 * 1024 } });
    url = cluster.regions.get('solo')!.url;
  });
  afterAll(async () => {
    await cluster.dispose();
  });

  it('refuses the 90,000-object PUT with 413 too_complex and changes nothing', async () => {
    const before = await syncStatus(url);
    const body = emptyObjects(90_000);
    expect(JSON.stringify(body).length).toBeLessThan(1024 * 1024);
    const res = await http<{ error: string }>(`${url}/v1/docs/c/huge`, { method: 'PUT', body });
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('too_complex');
    expect((await http(`${url}/v1/docs/c/huge`)).status).toBe(404);
    expect((await syncStatus(url)).digest).toBe(before.digest);
    const ops = [{ op: 'set', path: ['v'], value: emptyObjects(6_000) }];
    const opsRes = await http<{ error: string }>(`${url}/v1/docs/c/huge/ops`, { method: 'POST', body: ops });
    expect(opsRes.status).toBe(413);
    expect(opsRes.body.error).toBe('too_complex');
    // Maps a long path creates count as an object's would: 1,000 paths of 64 new keys each.
    const deep = Array.from({ length: 1000 }, (_, i) => ({ op: 'set', path: [String(i), ...Array.from({ length: 63 }, (_, k) => `k${k}`)], value: 1 }));
    const deepRes = await http<{ error: string }>(`${url}/v1/docs/c/huge/ops`, { method: 'POST', body: deep });
    expect(deepRes.status).toBe(413);
    expect(deepRes.body.error).toBe('too_complex');
    expect((await http(`${url}/v1/docs/c/huge`)).status).toBe(404);
  });

  it('refuses a write whose update peers would refuse, and keeps the document as it was', async () => {
    const doc = `${url}/v1/docs/c/big`;
    expect((await http(doc, { method: 'PUT', body: { a: 1 } })).status).toBe(200);
    const digest = (await syncStatus(url)).digest;
    // One node, 300 KB of text: under the body limit, over the update limit.
    const res = await http<{ error: string; message: string }>(doc, { method: 'PUT', body: { a: 1, s: 'x'.repeat(300_000) } });
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('body_too_large');
    expect(res.body.message).toMatch(/yjsUpdateBytes/);
    expect((await http(doc)).body).toEqual({ a: 1 });
    expect((await syncStatus(url)).digest).toBe(digest);
    // The in-memory document was put back: the next write builds on the stored one.
    expect((await http(doc, { method: 'PATCH', body: { b: 2 } })).status).toBe(200);
    expect((await http(doc)).body).toEqual({ a: 1, b: 2 });
  });

  it('keeps /healthz fast while the largest accepted writes arrive concurrently', async () => {
    const writers = 4;
    const rounds = 4;
    let writing = true;
    const latencies: number[] = [];
    const probe = (async () => {
      while (writing) {
        const t = performance.now();
        const res = await fetch(`${url}/healthz`);
        await res.arrayBuffer();
        latencies.push(performance.now() - t);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const statuses = await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        const out: number[] = [];
        for (let round = 0; round < rounds; round++) {
          // A fresh key set each round: the PUT deletes 5,000 maps and creates 5,000.
          const json = JSON.stringify(emptyObjects(4_999, `r${round}k`));
          out.push(await putRaw(`${url}/v1/docs/load/w${w}`, json));
        }
        return out;
      }),
    );
    writing = false;
    await probe;
    expect(statuses.flat().every((s) => s === 200)).toBe(true);
    const p99 = percentile(latencies, 99);
    console.log(`healthz under ${writers}x${rounds} PUTs of 5,000 nodes: n=${latencies.length} p50=${percentile(latencies, 50).toFixed(1)} ms p99=${p99.toFixed(1)} ms max=${Math.max(...latencies).toFixed(1)} ms`);
    expect(latencies.length).toBeGreaterThan(10);
    // Generous for a loaded CI machine; before the bound one such write held the loop for seconds.
    expect(p99).toBeLessThan(1000);
  });
});

describe('an entry a peer cannot apply does not stop the link', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // Regions configured differently: "small" refuses updates above 64 KiB.
    cluster = await startTestCluster(['large', 'small'], {}, { small: { limits: { yjsUpdateBytes: 64 * 1024 } } });
  });
  afterAll(async () => {
    await cluster.dispose();
  });

  it('quarantines it, keeps replicating later writes, and repairs the document by state', async () => {
    const large = cluster.regions.get('large')!;
    const small = cluster.regions.get('small')!;
    const text = 'x'.repeat(150_000);
    expect((await http(`${large.url}/v1/docs/c/wide`, { method: 'PUT', body: { text } })).status).toBe(200);
    expect((await http(`${large.url}/v1/docs/c/after`, { method: 'PUT', body: { n: 1 } })).status).toBe(200);

    // Later writes reach the smaller region over the same link.
    await waitFor('the later write at small', async () => (await http(`${small.url}/v1/docs/c/after`)).status === 200);
    const status = await syncStatus(small.url);
    const link = status.peers.find((p) => p.region === 'large')!;
    expect(link.state).toBe('up');
    expect((link.inbound as { quarantined?: number }).quarantined).toBe(1);
    expect((await http<string>(`${small.url}/metrics`)).body).toMatch(/meridian_quarantined_entries_total\{[^}]*peer="large"[^}]*\} 1/);

    // Anti-entropy repairs the document by state, and the regions converge.
    await waitFor('state repair of the quarantined document', async () => {
      const r = await http<{ text?: string }>(`${small.url}/v1/docs/c/wide`);
      return r.status === 200 && r.body.text === text;
    }, 30_000, 250);
    await waitForConvergence(cluster);

    expect((await http(`${large.url}/v1/docs/c/next`, { method: 'PUT', body: { n: 2 } })).status).toBe(200);
    await waitFor('a write after the repair', async () => (await http(`${small.url}/v1/docs/c/next`)).status === 200);
    const after = (await syncStatus(small.url)).peers.find((p) => p.region === 'large')!;
    expect(after.lastError).toBeNull();
    const logged = readFileSync(small.logPath, 'utf8').split('\n').filter((l) => l.includes('quarantined'));
    expect(logged).toHaveLength(1);
  });
});

describe('a peer cannot grow a document past what merges from peers may', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    // Regions configured differently: "small" keeps documents to 64 KiB, so merges from its one peer to 2 × (64 + 1) KiB.
    cluster = await startTestCluster(['large', 'small'], {}, { small: { limits: { maxDocumentBytes: 64 * 1024 } } });
  });
  afterAll(async () => {
    await cluster.dispose();
  });

  it('quarantines the entry, refuses the state that would repair it, keeps the link and says so', async () => {
    const large = cluster.regions.get('large')!;
    const small = cluster.regions.get('small')!;
    const first = 'a'.repeat(100_000);
    expect((await http(`${large.url}/v1/docs/c/big`, { method: 'PUT', body: { first } })).status).toBe(200);
    await waitFor('the first write at small', async () => (await http(`${small.url}/v1/docs/c/big`)).status === 200);
    expect((await http(`${large.url}/v1/docs/c/big`, { method: 'PATCH', body: { second: 'b'.repeat(100_000) } })).status).toBe(200);
    expect((await http(`${large.url}/v1/docs/c/after`, { method: 'PUT', body: { n: 1 } })).status).toBe(200);
    await waitFor('the later write at small', async () => (await http(`${small.url}/v1/docs/c/after`)).status === 200);
    const link = (await syncStatus(small.url)).peers.find((p) => p.region === 'large')!;
    expect((link.inbound as { quarantined?: number }).quarantined).toBe(1);

    // Anti-entropy offers the whole state to repair it: refused, the link kept, and shown.
    await waitFor('the state refused', async () => /meridian_frames_rejected_total\{[^}]*reason="doc_state_refused"[^}]*\} [1-9]/.test((await http<string>(`${small.url}/metrics`)).body), 30_000, 250);
    const status = (await syncStatus(small.url)).peers.find((p) => p.region === 'large')!;
    expect(status.state).toBe('up');
    // Measured as it was merged, or refused unmeasured within the second after the entry was (see size-guard.ts).
    expect(status.lastError).toMatch(/^doc_state_refused: (the merge would leave c\/big with|c\/big was measured at) \d+ bytes of state,? (moments ago, )?past the 133120 that merges from peers may grow a document to/);
    expect((await http<{ first?: string; second?: string }>(`${small.url}/v1/docs/c/big`)).body).toEqual({ first });
    expect(readFileSync(small.logPath, 'utf8')).toContain('a document state from the peer was refused; the link stays');

    // Replication goes on; the document's deletion, which shrinks it, is taken.
    expect((await http(`${large.url}/v1/docs/c/next`, { method: 'PUT', body: { n: 2 } })).status).toBe(200);
    await waitFor('a write after the refusal', async () => (await http(`${small.url}/v1/docs/c/next`)).status === 200);
    expect((await http(`${large.url}/v1/docs/c/big`, { method: 'DELETE' })).status).toBe(200);
    await waitFor('the deletion at small', async () => (await http(`${small.url}/v1/docs/c/big`)).status === 404, 30_000, 250);
    expect((await syncStatus(small.url)).peers.find((p) => p.region === 'large')!.state).toBe('up');
  });
});

describe('the size of one document is bounded', () => {
  let cluster: Cluster;
  let url: string;
  const LIMIT = 600 * 1024;

  beforeAll(async () => {
    cluster = await startTestCluster(['solo'], { limits: { yjsUpdateBytes: 256 * 1024, maxDocumentBytes: LIMIT } });
    url = cluster.regions.get('solo')!.url;
  });
  afterAll(async () => {
    await cluster.dispose();
  });

  const patch = (body: Record<string, unknown>) => http<{ error?: string; message?: string }>(`${url}/v1/docs/big/doc`, { method: 'PATCH', body });
  const part = (i: number) => String(i).repeat(200_000);

  it('refuses a write that grows a document past limits.maxDocumentBytes, keeps nothing of it, and takes one that shrinks it', async () => {
    expect((await patch({ part0: part(0) })).status).toBe(200);
    expect((await patch({ part1: part(1) })).status).toBe(200);
    expect((await patch({ part2: part(2) })).status).toBe(200);
    const refused = await patch({ part3: part(3) });
    expect(refused.status).toBe(413);
    expect(refused.body).toMatchObject({ error: 'body_too_large' });
    expect(refused.body.message).toMatch(new RegExp(`would leave the document with \\d+ bytes of state; regions keep at most ${LIMIT} per document \\(limits\\.maxDocumentBytes\\)`));
    // Measured over the bound, the document is full for a second or so (a
    // write that could grow it is refused before it is applied: the clock of
    // that is tested in documents.test.ts); after, it is measured again.
    // Either way the same write is refused, and one that only deletes is taken.
    const again = await patch({ part3: part(3) });
    expect(again.status).toBe(413);
    expect(again.body.message).toMatch(/at its size bound .*refused for a second or so|would leave the document with \d+ bytes of state/);
    const kept = await http<Record<string, string>>(`${url}/v1/docs/big/doc`);
    expect(Object.keys(kept.body).sort()).toEqual(['part0', 'part1', 'part2']);
    expect((await patch({ part0: null })).status).toBe(200);
    // Deleting made room: the same write is taken once the document is measured again.
    await waitFor('the write taken again', async () => (await patch({ part3: part(3) })).status === 200, 10_000, 200);
    const after = await http<Record<string, string>>(`${url}/v1/docs/big/doc`);
    expect(Object.keys(after.body).sort()).toEqual(['part1', 'part2', 'part3']);
    // Other documents are not affected.
    expect((await http(`${url}/v1/docs/big/other`, { method: 'PUT', body: { part: part(4) } })).status).toBe(200);
  });

  it('measures a document only now and then as small writes grow it: it ends past the bound by at most a 64th of it', async () => {
    const grow = (i: number) => http(`${url}/v1/docs/big/grown`, { method: 'PATCH', body: { [`s${i}`]: 'x'.repeat(2000) } });
    let refusedAt = -1;
    for (let i = 0; i < 1000 && refusedAt < 0; i++) if ((await grow(i)).status === 413) refusedAt = i;
    expect(refusedAt).toBeGreaterThan(0);
    const res = await fetch(`${url}/v1/docs/big/grown/yjs`);
    const bytes = (await res.arrayBuffer()).byteLength;
    expect(bytes).toBeGreaterThan(LIMIT - 4000);
    expect(bytes).toBeLessThanOrEqual(LIMIT + Math.floor(LIMIT / 64));
  });

  it('refuses deletions that split a text into pieces past the bound, alone or beside an insertion, and keeps everything it took', async () => {
    /** Deletes every other character of 20,000 from `from` (clocks, as the text was written in one go): a 40 KB update. */
    const deletions = (from: number): Uint8Array => {
      const e = encoding.createEncoder();
      encoding.writeVarUint(e, 0);
      encoding.writeVarUint(e, 1);
      encoding.writeVarUint(e, 4242);
      encoding.writeVarUint(e, 10_000);
      for (let i = 0; i < 10_000; i++) {
        encoding.writeVarUint(e, from + 2 * i);
        encoding.writeVarUint(e, 1);
      }
      return encoding.toUint8Array(e);
    };
    for (const inserting of [false, true]) {
      const path = `${url}/v1/docs/big/split-${inserting ? 'mixed' : 'deletions'}/yjs`;
      const post = (update: Uint8Array) => fetch(path, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from(update) });
      const editor = new Y.Doc();
      editor.clientID = 4242;
      editor.getText('t').insert(0, 'x'.repeat(100_000));
      // 100,000 characters in one item, about 100 KB of state.
      expect((await post(Y.encodeStateAsUpdate(editor))).status).toBe(200);
      // With one character inserted by another client, the write no longer only deletes.
      editor.clientID = 4343;
      const insertion = (): Uint8Array => {
        const before = Y.encodeStateVector(editor);
        editor.getText('t').insert(0, 'y');
        return Y.encodeStateAsUpdate(editor, before);
      };
      // Each taken write adds some 200 KB of state (20,000 pieces where there was one).
      let taken = 0;
      let refused: Response | null = null;
      for (let from = 0; from < 100_000 && refused === null; from += 20_000) {
        const res = await post(inserting ? Y.mergeUpdates([insertion(), deletions(from)]) : deletions(from));
        if (res.status === 200) taken++;
        else refused = res;
      }
      expect(taken).toBeGreaterThan(0);
      expect(refused?.status).toBe(413);
      const body = await refused!.json() as { error: string; message: string };
      expect(body.error).toBe('body_too_large');
      if (!inserting) expect(body.message).toMatch(/deleting inside items splits them/);
      const held = new Uint8Array(await (await fetch(path)).arrayBuffer());
      expect(held.byteLength).toBeLessThanOrEqual(LIMIT + Math.floor(LIMIT / 64));
      const doc = new Y.Doc();
      Y.applyUpdate(doc, held);
      expect(doc.getText('t').length).toBe(100_000 - 10_000 * taken + (inserting ? taken : 0));
    }
  });
});
