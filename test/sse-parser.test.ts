import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SseParser, type SseMessage } from '../src/client/sse.js';

/** Events as a server writes them, each line ended by `eol`. */
function serialize(events: SseMessage[], eol: string): string {
  const line = (text: string) => `${text}${eol}`;
  return events
    .map((e) => [...(e.id === undefined ? [] : [line(`id: ${e.id}`)]), line(`event: ${e.event}`), ...e.data.split('\n').map((d) => line(`data: ${d}`)), line(': comment'), line('')].join(''))
    .join('');
}

const text = fc.stringMatching(/^[a-z0-9 {}":,]*$/);
const event = fc.record({ id: fc.option(fc.stringMatching(/^[a-z0-9]+$/), { nil: undefined }), event: fc.stringMatching(/^[a-z]+$/).filter((s) => s !== ''), data: fc.array(text, { minLength: 1, maxLength: 4 }).map((lines) => lines.join('\n')) })
  .map((e) => (e.id === undefined ? { event: e.event, data: e.data } : { id: e.id, event: e.event, data: e.data }));

describe('the change feed parser', () => {
  it('reads the same events whatever the line endings and however the stream is cut into chunks', () => {
    fc.assert(
      // One line ending per stream: \r then \n would be one ending, not two.
      fc.property(fc.array(event, { maxLength: 8 }), fc.constantFrom('\n', '\r', '\r\n'), fc.array(fc.nat(), { maxLength: 20 }), (events, eol, cuts) => {
        const stream = serialize(events, eol);
        const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const parser = new SseParser();
        const got: SseMessage[] = [];
        let from = 0;
        for (const to of [...at, stream.length]) {
          got.push(...parser.push(stream.slice(from, to)));
          from = to;
        }
        // A stream that goes on: a \r at the end waits to be told from the first half of \r\n.
        got.push(...parser.push('\n'));
        expect(got).toEqual(events);
      }),
      { numRuns: 500 },
    );
  });

  it('takes a line sent a character at a time', () => {
    const parser = new SseParser();
    const stream = `data: ${'x'.repeat(5000)}\r\n\r\n`;
    const got: SseMessage[] = [];
    for (const ch of stream) got.push(...parser.push(ch));
    expect(got).toEqual([{ event: 'message', data: 'x'.repeat(5000) }]);
  });
});
