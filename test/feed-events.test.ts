/**
 * A change event's text: what every feed of a commit sends is rendered from
 * one JSON text of the document, not stringified again per feed (a large
 * document stringified once per subscriber held the event loop for as long).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { changeEvent } from '../src/api/feed-hub.js';
import { formatEvent } from '../src/api/feed-stream.js';
import type { JsonObject } from '../src/crdt/types.js';
import { docKey, type VersionVector, type WriterId } from '../src/ids.js';

const position: VersionVector = new Map([['eu-west~0000000000000001' as WriterId, 7]]);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('change events', () => {
  it('read exactly as the event data stringified whole', () => {
    const values: (JsonObject | null)[] = [
      null,
      {},
      { title: 'Q3 "plan"\n\u2028\u2029 \\ é 😀', n: -1.5e-7, tags: ['a', 'b'], nested: { deep: [null, true, { x: 0 }] } },
    ];
    for (const value of values) {
      const change = { doc: docKey('notes', 'a.b~c-1'), position, value };
      const event = changeEvent(change);
      expect(formatEvent(event)).toBe(`id: ${event.id}\nevent: change\ndata: ${JSON.stringify(event.data)}\n\n`);
      const anonymous = changeEvent(change, false);
      expect(formatEvent(anonymous)).toBe(`event: change\ndata: ${JSON.stringify(anonymous.data)}\n\n`);
    }
  });

  it('render a document once for every feed that sends it', () => {
    const value: JsonObject = { body: 'x'.repeat(1000), list: Array.from({ length: 100 }, (_, i) => i) };
    const stringify = vi.spyOn(JSON, 'stringify');
    const texts = Array.from({ length: 50 }, () => formatEvent(changeEvent({ doc: docKey('notes', 'big'), position, value })));
    expect(new Set(texts).size).toBe(1);
    expect(stringify.mock.calls.filter(([arg]) => arg === value)).toHaveLength(1);
  });
});
