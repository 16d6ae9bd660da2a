/**
 * A region whose documents in use outnumber `storage.decodedDocs` decodes
 * them again on each use; the count is on /metrics, so that an operator
 * sees when to raise it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { http, startTestCluster } from './helpers/cluster.js';

let cluster: Awaited<ReturnType<typeof startTestCluster>> | null = null;

afterEach(async () => {
  await cluster?.dispose();
  cluster = null;
});

const decodedAgain = (metrics: string): number =>
  Number(/^meridian_documents_decoded_again_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1] ?? Number.NaN);

describe('documents decoded again', () => {
  it('are counted on /metrics when more documents are in use than are held decoded', async () => {
    cluster = await startTestCluster(['solo'], { storage: { cacheDocs: 100, decodedDocs: 2 } });
    const url = cluster.url('solo');
    for (let i = 0; i < 20; i++) expect((await http(`${url}/v1/docs/m/d${i}`, { method: 'PUT', body: { i } })).status).toBe(200);
    const before = decodedAgain(String((await http<string>(`${url}/metrics`)).body));
    expect(before).toBeGreaterThanOrEqual(0);
    for (let i = 0; i < 20; i++) expect((await http(`${url}/v1/docs/m/d${i}`)).body).toEqual({ i });
    // All but the two held decoded were held encoded when read.
    const after = decodedAgain(String((await http<string>(`${url}/metrics`)).body));
    expect(after - before).toBeGreaterThanOrEqual(18);
  });
});
