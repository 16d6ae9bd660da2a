/**
 * What a client's binary Yjs update may do:
 * never write under a region's client id, never rewrite content already
 * held under an id, never lean on changes nobody holds; and document
 * digests that see content, not only structure.
 */
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { docDigest, stableClientId } from '../src/crdt/index.js';
import { MAX_TYPE_DEPTH, admitClientUpdate } from '../src/crdt/admit.js';
import { marker, namedTypeName } from '../src/crdt/layout.js';
import { validateUpdate } from '../src/crdt/validate.js';
import { docKey, type WriterId } from '../src/ids.js';
import { startApiNode, type ApiNode } from './helpers/api-node.js';

let node: ApiNode;

beforeEach(async () => {
  node = await startApiNode({ region: 'us-east' });
});

afterEach(async () => {
  await node.close();
});

const URL = '/v1/docs/notes/one/yjs';

function post(update: Uint8Array) {
  return node.app.inject({ method: 'POST', url: URL, headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(update) });
}

async function state(): Promise<{ json: unknown; version: string | undefined; yjs: Buffer }> {
  const json = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' });
  const yjs = await node.app.inject({ method: 'GET', url: URL });
  return { json: json.json(), version: json.headers['meridian-version'] as string | undefined, yjs: yjs.rawPayload };
}

/** An update writing `text` to the root map under a chosen client id. */
function updateAs(clientId: number, text: string, base?: Uint8Array): Uint8Array {
  const doc = new Y.Doc();
  if (base) Y.applyUpdate(doc, base);
  doc.clientID = clientId;
  const before = Y.encodeStateVector(doc);
  doc.getMap('root').set('text', text);
  return Y.encodeStateAsUpdate(doc, before);
}

describe('client ids', () => {
  it('refuses writes under any region client id, even of a region incarnation never heard of', async () => {
    const unseen = stableClientId('ap-south~never-heard-of' as WriterId, docKey('notes', 'one'));
    const res = await post(updateAs(unseen, 'forged'));
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ error: 'client_id_conflict' });
    expect((await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' })).statusCode).toBe(404);
  });

  it('refuses different content under a client id and clock it already holds, and changes nothing', async () => {
    expect((await post(updateAs(4242, 'first'))).statusCode).toBe(200);
    const before = await state();
    const res = await post(updateAs(4242, 'second'));
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ error: 'client_id_conflict' });
    const after = await state();
    expect(after.json).toEqual({ text: 'first' });
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
  });

  it('accepts a client\'s whole state resent after it deleted text the region still holds', async () => {
    const editor = new Y.Doc();
    editor.getText('t').insert(0, 'hello world');
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
    // Deleted at the client, which now encodes 'hello ' without its content.
    editor.getText('t').delete(0, 6);
    const res = await post(Y.encodeStateAsUpdate(editor));
    expect(res.statusCode).toBe(200);
    const held = new Y.Doc();
    Y.applyUpdate(held, (await state()).yjs);
    expect(held.getText('t').toString()).toBe('world');
  });

  it('accepts the same update again (a client resending what it sent)', async () => {
    const update = updateAs(4242, 'same');
    expect((await post(update)).statusCode).toBe(200);
    expect((await post(update)).statusCode).toBe(200);
    expect((await state()).json).toEqual({ text: 'same' });
  });

  it('compares a long text resent after most of it was deleted piece by piece, in time, and still refuses a change in a kept piece', async () => {
    // 40,000 characters in one insert, then every other one deleted: the
    // region holds them as 40,000 pieces. Each piece used to turn the whole
    // resent text into units again (minutes for this one); a resend now
    // compares each piece alone, and the test ends well within its timeout.
    const length = 40_000;
    const writer = new Y.Doc();
    writer.clientID = 5151;
    writer.getText('essay').insert(0, 'ab'.repeat(length / 2));
    const inserted = Y.encodeStateAsUpdate(writer);
    const afterInsert = Y.encodeStateVector(writer);
    writer.transact(() => {
      for (let i = length - 2; i >= 0; i -= 2) writer.getText('essay').delete(i, 1);
    });
    expect((await post(inserted)).statusCode).toBe(200);
    expect((await post(Y.encodeStateAsUpdate(writer, afterInsert))).statusCode).toBe(200);
    const before = await state();
    expect((await post(inserted)).statusCode).toBe(200);
    // The same insert with one kept character (odd positions survive) changed.
    const forger = new Y.Doc();
    forger.clientID = 5151;
    const text = 'ab'.repeat(length / 2);
    forger.getText('essay').insert(0, `${text.slice(0, 30_001)}Z${text.slice(30_002)}`);
    const res = await post(Y.encodeStateAsUpdate(forger));
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({ error: 'client_id_conflict' });
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
  }, 60_000);

  it('accepts structs a client got from the region, resent with its own edits', async () => {
    expect((await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/one', payload: { a: 1 } })).statusCode).toBe(200);
    const base = (await state()).yjs;
    const doc = new Y.Doc();
    Y.applyUpdate(doc, base);
    doc.clientID = 777;
    doc.getMap('root').set('b', 2);
    expect((await post(Y.encodeStateAsUpdate(doc))).statusCode).toBe(200);
    expect((await state()).json).toEqual({ a: 1, b: 2 });
  });
});

describe('deletions', () => {
  /** An update of deletions only: `ranges` of `client`, as given (a Yjs encoder sorts them). */
  function deletions(client: number, ranges: [clock: number, len: number][]): Uint8Array {
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 0);
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, ranges.length);
    for (const [clock, len] of ranges) {
      encoding.writeVarUint(e, clock);
      encoding.writeVarUint(e, len);
    }
    return encoding.toUint8Array(e);
  }

  it('refuses a client\'s deletions out of ascending order or overlapping, changing nothing, and takes them in order', async () => {
    const writer = new Y.Doc();
    writer.clientID = 6161;
    writer.getText('essay').insert(0, 'x'.repeat(1000));
    expect((await post(Y.encodeStateAsUpdate(writer))).statusCode).toBe(200);
    const before = await state();
    const every10th = Array.from({ length: 100 }, (_, i): [number, number] => [i * 10, 1]);
    for (const ranges of [[...every10th].reverse(), [[0, 5], [3, 5]] as [number, number][]]) {
      const res = await post(deletions(6161, ranges));
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_update', message: expect.stringMatching(/deletions of client 6161 are not in ascending order/) });
      const after = await state();
      expect(after.yjs.equals(before.yjs)).toBe(true);
      expect(after.version).toBe(before.version);
    }
    expect((await post(deletions(6161, every10th))).statusCode).toBe(200);
    const read = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' });
    expect(read.json()).toMatchObject({ $yjs: { essay: 'x'.repeat(900) } });
  });

  it('refuses deletions that would split held items at so many places that Yjs moves too many of its structs, and takes fewer', async () => {
    // A text, then 20,000 more structs of the same client: each split of the text moves them all.
    const writer = new Y.Doc();
    writer.clientID = 7171;
    writer.getText('essay').insert(0, 'x'.repeat(40_002));
    expect((await post(Y.encodeStateAsUpdate(writer))).statusCode).toBe(200);
    const sv = Y.encodeStateVector(writer);
    writer.transact(() => {
      for (let i = 0; i < 20_000; i++) writer.getMap('root').set(`k${i}`, i);
    });
    expect((await post(Y.encodeStateAsUpdate(writer, sv))).statusCode).toBe(200);
    const before = await state();
    // Every other character: 40,000 splits of 20,000 moves each.
    const everyOther = Array.from({ length: 20_000 }, (_, k): [number, number] => [2 * k + 1, 1]);
    const res = await post(deletions(7171, everyOther));
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ error: 'too_complex', message: expect.stringMatching(/splits the document's items/) });
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
    // A hundred of them is taken.
    expect((await post(deletions(7171, everyOther.slice(0, 100)))).statusCode).toBe(200);
  }, 30_000);

  it('refuses text ops that could split held items at places where Yjs moves too many structs, before writing anything, and takes fewer', async () => {
    // A text field written by a client that then wrote 60,000 other structs: each split of the text moves them all.
    const writer = new Y.Doc();
    writer.clientID = 7272;
    writer.getMap('root').set('body', marker('text'));
    writer.getText(namedTypeName('text', ['body'])).insert(0, 'x'.repeat(4_002));
    expect((await post(Y.encodeStateAsUpdate(writer))).statusCode).toBe(200);
    for (let part = 0; part < 3; part++) {
      const sv = Y.encodeStateVector(writer);
      writer.transact(() => {
        for (let i = 0; i < 20_000; i++) writer.getMap('root').set(`k${part}-${i}`, i);
      });
      expect((await post(Y.encodeStateAsUpdate(writer, sv))).statusCode).toBe(200);
    }
    const before = await state();
    const ops = (n: number) => ({ ops: Array.from({ length: n }, (_, k) => ({ op: 'deleteText', path: ['body'], index: 2 * (n - k) - 1, length: 1 })) });
    const res = await node.app.inject({ method: 'POST', url: '/v1/docs/notes/one/ops', payload: ops(1000) });
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ error: 'too_complex', message: expect.stringMatching(/send fewer text ops per request/) });
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
    expect((await node.app.inject({ method: 'POST', url: '/v1/docs/notes/one/ops', payload: ops(100) })).statusCode).toBe(200);
    expect(((await state()).json as { body: string }).body).toHaveLength(4_002 - 100);
  }, 30_000);

  it('counts the pieces earlier splits of the same update put after a split, and not splits Yjs does not make', () => {
    const region = new Y.Doc();
    region.clientID = 1000;
    region.getText('t').insert(0, 'a'.repeat(200_000));
    const held = Y.encodeStateVector(region);
    // Inserts near the end of the one held item, at falling places, then deletions near its start:
    // each deletion's split moves every piece the inserts split off.
    const client = new Y.Doc();
    client.clientID = 2000;
    Y.applyUpdate(client, Y.encodeStateAsUpdate(region));
    for (let i = 0; i < 10_000; i++) client.getText('t').insert(199_999 - i, 'b');
    const everyOther = Array.from({ length: 30_000 }, (_, k): [number, number] => [2 * k + 1, 1]);
    const update = Y.mergeUpdates([Y.encodeStateAsUpdate(client, held), deletions(1000, everyOther)]);
    expect(() => admitClientUpdate(region, validateUpdate(update, 1 << 20))).toThrow(/splits the document's items/);

    // An editor's deletions of characters deleted meanwhile at the region: Yjs splits no deleted item for them.
    const text = new Y.Doc();
    text.clientID = 1000;
    text.getText('t').insert(0, 'a'.repeat(10_000));
    text.transact(() => {
      for (let i = 0; i < 60_000; i++) text.getMap('m').set(`k${i}`, i);
    });
    const editor = new Y.Doc();
    editor.clientID = 7;
    Y.applyUpdate(editor, Y.encodeStateAsUpdate(text));
    for (let i = 999; i >= 0; i--) editor.getText('t').delete(i * 10, 1);
    text.getText('t').delete(0, 10_000);
    const resent = Y.encodeStateAsUpdate(editor, Y.encodeStateVector(text));
    expect(() => admitClientUpdate(text, validateUpdate(resent, 1 << 20))).not.toThrow();
  }, 30_000);
});

describe('editor content read as JSON', () => {
  /** An ordinary paragraph with a bold word under the share `prose`; its XML. */
  function writeProse(editor: Y.Doc): string {
    const paragraph = new Y.XmlElement('paragraph');
    editor.getXmlFragment('prose').insert(0, [paragraph]);
    const words = new Y.XmlText();
    paragraph.insert(0, [words]);
    words.insert(0, 'hello world');
    words.format(0, 5, { bold: true });
    const xml = editor.getXmlFragment('prose').toString();
    expect(xml).toBe('<paragraph><bold>hello</bold> world</paragraph>');
    return xml;
  }

  it('renders XML whose marks would take the square of its length as null, and the rest of the document in full', async () => {
    const editor = new Y.Doc();
    editor.clientID = 8181;
    // Each character opens one more mark that stays open: Yjs renders every mark open on each character.
    const marks = new Y.XmlText();
    editor.getXmlFragment('marks').insert(0, [marks]);
    const n = 1100;
    editor.transact(() => {
      marks.insert(0, 'x'.repeat(n));
      for (let i = n - 1; i >= 0; i--) marks.format(i, n - i, { [`m${i}`]: true });
    });
    const expected = writeProse(editor);
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
    expect((await node.app.inject({ method: 'POST', url: '/v1/docs/notes/two/yjs', headers: { 'content-type': 'application/octet-stream' }, payload: Buffer.from(Y.encodeStateAsUpdate(editor)) })).statusCode).toBe(200);

    const read = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toEqual({ $yjs: { marks: [null], prose: expected } });
    // The budget is the read's: the next document's editor content renders as far as it goes alone.
    expect((await node.app.inject({ method: 'GET', url: '/v1/docs/notes/two' })).json()).toEqual({ $yjs: { marks: [null], prose: expected } });
    // The whole of it, as Yjs holds it.
    const copy = new Y.Doc();
    Y.applyUpdate(copy, (await state()).yjs);
    expect(copy.getXmlFragment('marks').toString()).toBe(editor.getXmlFragment('marks').toString());
  }, 30_000);

  it('counts what a mark\'s key and value and an element\'s attributes make Yjs write, and renders what costs too much as null', async () => {
    const editor = new Y.Doc();
    editor.clientID = 8282;
    // One mark with a long key open over thousands of runs split by a toggled short one: Yjs writes the key twice a run.
    const long = new Y.XmlText();
    editor.getXmlFragment('long').insert(0, [long]);
    // An element whose attribute is a text with marks left open, one more per character.
    const element = new Y.XmlElement('p');
    editor.getXmlFragment('attribute').insert(0, [element]);
    const marks = new Y.XmlText();
    element.setAttribute('a', marks as unknown as string);
    editor.transact(() => {
      long.insert(0, 'x'.repeat(5_000));
      long.format(0, 5_000, { ['k'.repeat(4_000)]: true });
      for (let i = 0; i < 5_000; i += 2) long.format(i, 1, { b: true });
      marks.insert(0, 'x'.repeat(700));
      for (let i = 699; i >= 0; i--) marks.format(i, 700 - i, { [`m${i}`]: true });
    });
    const expected = writeProse(editor);
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
    const read = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toEqual({ $yjs: { attribute: [null], long: [null], prose: expected } });
  }, 30_000);
});

describe('the work of placing new items', () => {
  /** Text "az", then `n` characters of `client` each inserted at index 1 of what `base` holds: all placed right after "a". */
  function insertsAfterA(client: number, n: number, base: Uint8Array): Uint8Array {
    const doc = new Y.Doc();
    Y.applyUpdate(doc, base);
    doc.clientID = client;
    const before = Y.encodeStateVector(doc);
    for (let i = 0; i < n; i++) doc.getText('essay').insert(1, 'x');
    return Y.encodeStateAsUpdate(doc, before);
  }

  it('refuses an update whose items Yjs would place by scanning past the bound, changing nothing, and takes concurrent inserts below it', async () => {
    const az = new Y.Doc();
    az.clientID = 7070;
    az.getText('essay').insert(0, 'az');
    const base = Y.encodeStateAsUpdate(az);
    expect((await post(base)).statusCode).toBe(200);
    // 3,000 items after "a", then 3,000 more under a larger client id made without seeing
    // them: each of the second would be placed by scanning all of the first (9 million steps).
    expect((await post(insertsAfterA(7071, 3000, base))).statusCode).toBe(200);
    const before = await state();
    const res = await post(insertsAfterA(7072, 3000, base));
    expect(res.statusCode).toBe(413);
    expect(res.json()).toMatchObject({ error: 'too_complex', message: expect.stringMatching(/scan more than 200000 items/) });
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
    // Concurrent inserts at one place as editors make them are placed as before.
    const few = insertsAfterA(7073, 20, base);
    expect((await post(few)).statusCode).toBe(200);
    const read = await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' });
    expect((read.json() as { $yjs: { essay: string } }).$yjs.essay).toHaveLength(2 + 3000 + 20);
  });
});

describe('updates that depend on changes nobody holds', () => {
  it('refuses deletions of items this region does not hold, and never leaves the document pending', async () => {
    expect((await post(updateAs(4242, 'kept'))).statusCode).toBe(200);
    const before = await state();
    // 2,000 unknown clients each deleting a range of length 2^40.
    const ds = new Map<number, { clock: number; len: number }[]>();
    for (let c = 0; c < 2000; c++) ds.set(10_000 + c, [{ clock: 0, len: 2 ** 40 }]);
    const res = await post(encodeDeleteSet(ds));
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: 'invalid_update' });
    expect(node.documents.pendingDocs()).toBe(0);
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(after.version).toBe(before.version);
  });

  it('refuses a struct whose origin this region does not hold', async () => {
    const elsewhere = new Y.Doc();
    elsewhere.clientID = 99;
    elsewhere.getArray('list').insert(0, ['held elsewhere']);
    const missing = Y.encodeStateAsUpdate(elsewhere);
    const sv = Y.encodeStateVector(elsewhere);
    elsewhere.clientID = 100;
    elsewhere.getArray('list').insert(1, ['after it']);
    const res = await post(Y.encodeStateAsUpdate(elsewhere, sv));
    expect(res.statusCode).toBe(400);
    expect(node.documents.pendingDocs()).toBe(0);
    // Once the dependency is here, the same update is taken.
    expect((await post(missing)).statusCode).toBe(200);
    expect((await post(Y.encodeStateAsUpdate(elsewhere, sv))).statusCode).toBe(200);
    expect(node.documents.pendingDocs()).toBe(0);
  });

  it('refuses a client written in two sections, of which Yjs applies only the last, and clients out of Yjs\'s order', async () => {
    const editor = new Y.Doc();
    editor.clientID = 11_111;
    const first = captured(editor, () => editor.getText('t').insert(0, 'abc'));
    const second = captured(editor, () => editor.getText('t').insert(3, 'def'));
    // Each: one client section, then an empty delete set. Together: two sections of the same client, clocks 0-3 and
    // 3-6; the first alone as an empty section after them.
    const sectionOf = (update: Uint8Array): Uint8Array => {
      expect([update[0], update.at(-1)]).toEqual([1, 0]);
      return update.subarray(1, -1);
    };
    const twoSections = Uint8Array.from([2, ...sectionOf(first), ...sectionOf(second), 0]);
    const emptied = Uint8Array.from([2, ...sectionOf(first), 0, ...sectionOf(first).subarray(1, 1 + lengthOfVarUint(11_111)), 0, 0]);
    // Two clients, the lower first: applied whole, but Y.mergeUpdates (stored parts merged, states for peers) drops the higher.
    const other = new Y.Doc();
    other.clientID = 22_222;
    const higher = captured(other, () => other.getMap('m').set('x', 1));
    const ascending = Uint8Array.from([2, ...sectionOf(first), ...sectionOf(higher), 0]);
    const before = await state();
    for (const update of [twoSections, emptied, ascending]) {
      const res = await post(update);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_update', message: expect.stringMatching(/client sections|descending order/) });
    }
    expect(node.documents.pendingDocs()).toBe(0);
    expect((await state()).yjs.equals(before.yjs)).toBe(true);
    // Written as Yjs writes it, the same content is taken.
    expect((await post(Y.mergeUpdates([first, second]))).statusCode).toBe(200);
    expect(node.documents.pendingDocs()).toBe(0);
  });
});

/** An update's changes made by `change` on `ydoc`. */
function captured(ydoc: Y.Doc, change: () => void): Uint8Array {
  const before = Y.encodeStateVector(ydoc);
  change();
  return Y.encodeStateAsUpdate(ydoc, before);
}

function lengthOfVarUint(n: number): number {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, n);
  return encoding.length(e);
}

describe('items placed between neighbours no editor wrote side by side', () => {
  /** A text item of `client` at `clock` placed between `origin` and `right`, as no Yjs editor writes one. */
  function forged(client: number, clock: number, origin: Y.ID, right: Y.ID, text: string): Uint8Array {
    const e = encoding.createEncoder();
    // One client, one struct; a string with both origins (its info byte 4 | 0x80 | 0x40); no deletions.
    for (const n of [1, 1, client, clock]) encoding.writeVarUint(e, n);
    encoding.writeUint8(e, 4 | 0x80 | 0x40);
    for (const n of [origin.client, origin.clock, right.client, right.clock]) encoding.writeVarUint(e, n);
    encoding.writeVarString(e, text);
    encoding.writeVarUint(e, 0);
    return encoding.toUint8Array(e);
  }

  /** What the region's own state of the document loads to, as JSON. */
  async function reloaded(): Promise<unknown> {
    const { yjs } = await state();
    const again = await startApiNode({ region: 'eu-west' });
    try {
      expect((await again.app.inject({ method: 'POST', url: URL, headers: { 'content-type': 'application/octet-stream' }, payload: yjs })).statusCode).toBe(200);
      return (await again.app.inject({ method: 'GET', url: '/v1/docs/notes/one' })).json();
    } finally {
      await again.close();
    }
  }

  it('refuses one that leaves the document other than its state reloads to, sent after the run or with it', async () => {
    const editor = new Y.Doc();
    editor.clientID = 100;
    editor.getText('t').insert(0, 'bca');
    const run = Y.encodeStateAsUpdate(editor);
    // 'yz' between the 'a' and the 'c' of the run: taken, the region served "byzca" while its state loaded to "bcayz".
    const between = forged(100, 3, Y.createID(100, 2), Y.createID(100, 1), 'yz');
    const both = Y.mergeUpdates([run, between]);
    const refusedWithNothingChanged = async (update: Uint8Array) => {
      const before = await state();
      const res = await post(update);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_update', message: expect.stringMatching(/no editor wrote side by side/) });
      expect(await state()).toEqual(before);
    };
    await refusedWithNothingChanged(both);
    expect((await post(run)).statusCode).toBe(200);
    await refusedWithNothingChanged(between);
    expect((await state()).json).toEqual(await reloaded());
  });

  /** A raw update of text structs, each as given (none merged), by client in the order Yjs writes them. */
  function rawText(structs: { client: number; clock: number; origin?: Y.ID; right?: Y.ID; text: string }[]): Uint8Array {
    const e = encoding.createEncoder();
    const clients = [...new Set(structs.map((s) => s.client))].sort((a, b) => b - a);
    encoding.writeVarUint(e, clients.length);
    for (const client of clients) {
      const own = structs.filter((s) => s.client === client);
      for (const n of [own.length, client, own[0]!.clock]) encoding.writeVarUint(e, n);
      for (const s of own) {
        encoding.writeUint8(e, 4 | (s.origin ? 0x80 : 0) | (s.right ? 0x40 : 0));
        for (const id of [s.origin, s.right]) if (id) for (const n of [id.client, id.clock]) encoding.writeVarUint(e, n);
        if (!s.origin && !s.right) {
          encoding.writeVarUint(e, 1);
          encoding.writeVarString(e, 't');
        }
        encoding.writeVarString(e, s.text);
      }
    }
    encoding.writeVarUint(e, 0);
    return encoding.toUint8Array(e);
  }

  it('refuses one naming two places of runs that Yjs merges once the update is applied, in one request or after an honest one', async () => {
    // 'ab' and 'cd' of client 100 in one update, and 'X' of client 200 named as written between the 'c' and the 'b'.
    const oneRequest = rawText([
      { client: 100, clock: 0, text: 'ab' },
      { client: 100, clock: 2, origin: Y.createID(100, 1), text: 'cd' },
      { client: 200, clock: 0, origin: Y.createID(100, 2), right: Y.createID(100, 1), text: 'X' },
    ]);
    const before = await state();
    expect((await post(oneRequest)).statusCode).toBe(400);
    expect(await state()).toEqual(before);
    // An honest 'bca', then its continuation 'pq' and an 'X' named as written between the 'q' and the 'c'.
    const editor = new Y.Doc();
    editor.clientID = 100;
    editor.getText('t').insert(0, 'bca');
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
    const afterRun = await state();
    const res = await post(rawText([
      { client: 100, clock: 3, origin: Y.createID(100, 2), text: 'pq' },
      { client: 200, clock: 0, origin: Y.createID(100, 4), right: Y.createID(100, 1), text: 'X' },
    ]));
    expect(res.statusCode).toBe(400);
    expect(await state()).toEqual(afterRun);
    expect((await state()).json).toEqual(await reloaded());
  });

  it('checks such updates of a large document at most once per twenty times the last check took, and keeps serving', async () => {
    for (let part = 0; part < 5; part++) {
      const fields = Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`k${part}_${i}`, i]));
      expect((await node.app.inject({ method: 'PATCH', url: '/v1/docs/notes/one', payload: fields })).statusCode).toBe(200);
    }
    const editor = new Y.Doc();
    editor.clientID = 100;
    editor.getText('t').insert(0, 'bca');
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
    const between = forged(100, 3, Y.createID(100, 2), Y.createID(100, 1), 'yz');
    // Checked (a build and two digests of 20,000 keys): refused as splitting it from its reload.
    expect((await post(between)).statusCode).toBe(400);
    // At once again: not checked, refused for the cost, nothing changed.
    const before = await state();
    const again = await post(between);
    expect(again.statusCode).toBe(503);
    expect(again.json()).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/at most once per 20 times/) });
    // `retry-after` says when the document has rested, as the message does.
    expect(again.headers['retry-after']).toBe(/retry in (\d+) s/.exec(again.json<{ message: string }>().message)?.[1]);
    expect(await state()).toEqual(before);
    // Other writes are taken meanwhile.
    expect((await node.app.inject({ method: 'PATCH', url: '/v1/docs/notes/one', payload: { after: 1 } })).statusCode).toBe(200);
  }, 60_000);

  it('keeps the document what its state reloads to whatever neighbours an item names, and takes a concurrent insert', async () => {
    const a = new Y.Doc();
    a.clientID = 1;
    a.getArray('list').insert(0, ['x']);
    a.getMap('root').set('k', 1);
    const b = new Y.Doc();
    b.clientID = 2;
    Y.applyUpdate(b, Y.encodeStateAsUpdate(a));
    b.getArray('list').insert(1, ['y']);
    expect((await post(Y.encodeStateAsUpdate(b))).statusCode).toBe(200);
    // Reversed neighbours in one list, and one beside a map entry: taken or refused, never split from the reload.
    for (const update of [forged(3, 0, Y.createID(2, 0), Y.createID(1, 0), 'z'), forged(4, 0, Y.createID(1, 0), Y.createID(1, 1), 'z')]) {
      expect([200, 400]).toContain((await post(update)).statusCode);
      expect((await state()).json).toEqual(await reloaded());
    }
    const c = new Y.Doc();
    c.clientID = 5;
    Y.applyUpdate(c, (await state()).yjs);
    const sv = Y.encodeStateVector(c);
    c.getArray('list').insert(1, ['between']);
    expect((await post(Y.encodeStateAsUpdate(c, sv))).statusCode).toBe(200);
    const held = new Y.Doc();
    Y.applyUpdate(held, (await state()).yjs);
    expect(held.getArray('list').toArray()).toContain('between');
  });

  it('takes every update of an editor undoing in XML through a deleted parent (it names one item as both neighbours)', async () => {
    const editor = new Y.Doc();
    const frag = editor.getXmlFragment('prosemirror');
    const undo = new Y.UndoManager(frag, { captureTimeout: 0 });
    const outbox: Uint8Array[] = [];
    editor.on('update', (u: Uint8Array) => outbox.push(u));
    const statuses: number[] = [];
    const send = async () => {
      for (const u of outbox.splice(0)) statuses.push((await post(u)).statusCode);
    };
    const paragraph = (text: string) => {
      const p = new Y.XmlElement('paragraph');
      const t = new Y.XmlText();
      t.insert(0, text);
      p.insert(0, [t]);
      return p;
    };
    const quote = new Y.XmlElement('blockquote');
    quote.insert(0, [paragraph('first')]);
    frag.insert(0, [quote]);
    await send();
    undo.clear();
    quote.delete(0, 1);
    await send();
    undo.undo();
    await send();
    undo.clear();
    quote.insert(1, [paragraph('second')]);
    await send();
    quote.delete(1, 1);
    await send();
    frag.delete(0, 1);
    await send();
    undo.undo();
    await send();
    undo.undo();
    await send();
    expect(statuses.every((s) => s === 200)).toBe(true);
    const served = new Y.Doc();
    Y.applyUpdate(served, (await state()).yjs);
    expect(served.getXmlFragment('prosemirror').toString()).toBe(frag.toString());
  });

  it('takes a full-state resend of a list written newest first (its held items are not walked again)', async () => {
    const editor = new Y.Doc();
    const outbox: Uint8Array[] = [];
    editor.on('update', (u: Uint8Array) => outbox.push(u));
    const list = editor.getArray('feed');
    list.insert(0, ['header']);
    for (let i = 0; i < 800; i++) list.insert(1, [`post ${i}`]);
    for (const u of outbox.splice(0)) expect((await post(u)).statusCode).toBe(200);
    expect((await post(Y.encodeStateAsUpdate(editor))).statusCode).toBe(200);
  }, 60_000);
});

describe('shared types nested inside one another', () => {
  /** Maps `levels` deep under root.deep, built on `base`, as one update under `clientId`. */
  function nestedMaps(levels: number, clientId: number, base?: Uint8Array): Uint8Array {
    const doc = new Y.Doc();
    if (base) Y.applyUpdate(doc, base);
    doc.clientID = clientId;
    const before = Y.encodeStateVector(doc);
    let map = doc.getMap('root');
    while (map.has('deep')) map = map.get('deep') as Y.Map<unknown>;
    for (let i = 0; i < levels; i++) {
      const inner = new Y.Map<unknown>();
      map.set('deep', inner);
      map = inner;
    }
    map.set('leaf', 'here');
    return Y.encodeStateAsUpdate(doc, before);
  }

  it('refuses an update nesting types past the bound and changes nothing, however deep the attempt', async () => {
    expect((await post(updateAs(7, 'kept'))).statusCode).toBe(200);
    const before = await state();
    for (const levels of [MAX_TYPE_DEPTH + 1, 3000]) {
      const res = await post(nestedMaps(levels, 8));
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ error: 'invalid_update' });
      expect(res.json().message).toContain(`nests shared types deeper than ${MAX_TYPE_DEPTH} levels`);
    }
    expect(await state()).toEqual(before);
  });

  it('takes the bound itself, and counts levels the document already holds', async () => {
    // A chain of MAX_TYPE_DEPTH - 1 maps under root, then one more (the bound), then one too many.
    const first = nestedMaps(MAX_TYPE_DEPTH - 1, 9);
    expect((await post(first)).statusCode).toBe(200);
    const held = (await node.app.inject({ method: 'GET', url: URL })).rawPayload;
    expect((await post(nestedMaps(1, 10, new Uint8Array(held)))).statusCode).toBe(200);
    const again = (await node.app.inject({ method: 'GET', url: URL })).rawPayload;
    const refused = await post(nestedMaps(1, 11, new Uint8Array(again)));
    expect(refused.statusCode).toBe(400);
    expect(refused.json().message).toContain('nests shared types deeper');
  });

  it('refuses nested XML elements past the bound, and takes long texts and wide documents', async () => {
    const doc = new Y.Doc();
    doc.clientID = 12;
    let element: Y.XmlElement | Y.XmlFragment = doc.getXmlFragment('prosemirror');
    for (let i = 0; i < MAX_TYPE_DEPTH + 5; i++) {
      const child = new Y.XmlElement('div');
      element.insert(0, [child]);
      element = child;
    }
    const res = await post(Y.encodeStateAsUpdate(doc));
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toContain('nests shared types deeper');

    // A text typed letter by letter: every item's place is its origin's, a chain thousands long.
    const typed = new Y.Doc();
    typed.clientID = 13;
    const text = new Y.Text();
    typed.getMap('root').set('text', text);
    const list = new Y.Array<Y.Map<unknown>>();
    typed.getMap('root').set('list', list);
    for (let i = 0; i < 3000; i++) text.insert(i, 'x');
    for (let i = 0; i < 500; i++) list.push([new Y.Map()]);
    expect((await post(Y.encodeStateAsUpdate(typed))).statusCode).toBe(200);
  });
});

describe('values JSON cannot carry', () => {
  it('takes a BigInt value and keeps digests, reads and the write path working', async () => {
    const doc = new Y.Doc();
    doc.clientID = 77;
    doc.getMap('root').set('n', 10n);
    expect((await post(Y.encodeStateAsUpdate(doc))).statusCode).toBe(200);
    expect(() => node.documents.digests.regionDigest()).not.toThrow();
    expect((await node.app.inject({ method: 'GET', url: '/v1/docs/notes/one' })).statusCode).toBe(200);
    // Resending it is compared to what is held, without throwing.
    expect((await post(Y.encodeStateAsUpdate(doc))).statusCode).toBe(200);
    expect((await node.app.inject({ method: 'PATCH', url: '/v1/docs/notes/one', payload: { after: 1 } })).statusCode).toBe(200);
  });

  it('refuses an object key "__proto__" in a value, which decoding would make the object\'s prototype, and changes nothing', async () => {
    expect((await node.app.inject({ method: 'PUT', url: '/v1/docs/notes/one', payload: { title: 'hi' } })).statusCode).toBe(200);
    const before = await state();
    // Written by hand: lib0 cannot encode an object with that key. root.evil = { __proto__: [1, 2, 3], x: 5 }
    const e = encoding.createEncoder();
    encoding.writeVarUint(e, 1); // clients
    encoding.writeVarUint(e, 1); // structs of the client
    encoding.writeVarUint(e, 777); // client
    encoding.writeVarUint(e, 0); // clock
    encoding.writeUint8(e, 8 | 0x20); // ContentAny, with a parent key, no origins
    encoding.writeVarUint(e, 1); // the parent is a root type, by name
    encoding.writeVarString(e, 'root');
    encoding.writeVarString(e, 'evil');
    encoding.writeVarUint(e, 1); // one value
    encoding.writeUint8(e, 118); // an object of two keys
    encoding.writeVarUint(e, 2);
    encoding.writeVarString(e, '__proto__');
    encoding.writeUint8(e, 117); // an array of three
    encoding.writeVarUint(e, 3);
    for (const n of [1, 2, 3]) {
      encoding.writeUint8(e, 125);
      encoding.writeVarInt(e, n);
    }
    encoding.writeVarString(e, 'x');
    encoding.writeUint8(e, 125);
    encoding.writeVarInt(e, 5);
    encoding.writeVarUint(e, 0); // no deletions
    const res = await post(encoding.toUint8Array(e));
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: 'invalid_update', message: expect.stringMatching(/__proto__/) });
    const after = await state();
    expect(after.json).toEqual({ title: 'hi' });
    expect(after.yjs.equals(before.yjs)).toBe(true);
  });
});

describe('a state offered by a peer', () => {
  it('changes nothing when it does not conflict, and is refused when it is not an update', async () => {
    expect((await post(updateAs(4242, 'held'))).statusCode).toBe(200);
    const before = await state();
    const other = new Y.Doc();
    other.clientID = 9;
    other.getMap('root').set('text', 'unrelated');
    const key = docKey('notes', 'one');
    expect((await node.documents.replaceState(key, Y.encodeStateAsUpdate(other), 'eu-west' as never)).outcome).toBe('unrelated');
    expect((await node.documents.replaceState(docKey('notes', 'absent'), Y.encodeStateAsUpdate(other), 'eu-west' as never)).outcome).toBe('unrelated');
    await expect(Promise.resolve().then(() => node.documents.replaceState(key, new Uint8Array([1, 2, 3]), 'eu-west' as never))).rejects.toMatchObject({ code: 'invalid_update' });
    const after = await state();
    expect(after.yjs.equals(before.yjs)).toBe(true);
    expect(node.documents.conflictCount()).toBe(0);
    expect((await node.app.inject({ method: 'GET', url: '/v1/docs/notes/absent' })).statusCode).toBe(404);
  });
});

describe('document digests', () => {
  it('differ when content under the same ids differs, and agree however updates arrived', () => {
    const a = new Y.Doc();
    Y.applyUpdate(a, updateAs(5, 'one'));
    const b = new Y.Doc();
    Y.applyUpdate(b, updateAs(5, 'two'));
    expect(Y.encodeStateVector(a)).toEqual(Y.encodeStateVector(b));
    expect(docDigest(a)).not.toEqual(docDigest(b));

    const text = new Y.Doc();
    text.clientID = 9;
    const parts: Uint8Array[] = [];
    text.on('update', (u: Uint8Array) => parts.push(u));
    for (const ch of 'hello world') text.getText('t').insert(text.getText('t').length, ch);
    text.getText('t').delete(0, 3);
    const forward = new Y.Doc();
    const backward = new Y.Doc();
    for (const u of parts) Y.applyUpdate(forward, u);
    Y.applyUpdate(backward, Y.mergeUpdates([...parts].reverse()));
    forward.getMap('never-written');
    expect(docDigest(forward)).toEqual(docDigest(backward));
  });
});

/** A V1 update with no structs and the given delete set. */
function encodeDeleteSet(ds: Map<number, { clock: number; len: number }[]>): Uint8Array {
  const bytes: number[] = [];
  const varuint = (n: number) => {
    while (n >= 0x80) {
      bytes.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    bytes.push(n);
  };
  varuint(0);
  varuint(ds.size);
  for (const [client, ranges] of ds) {
    varuint(client);
    varuint(ranges.length);
    for (const r of ranges) {
      varuint(r.clock);
      varuint(r.len);
    }
  }
  return new Uint8Array(bytes);
}
