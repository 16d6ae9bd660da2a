/**
 * An incremental parser of Server-Sent Events (the HTML `text/event-stream`
 * format), for reading a change feed through fetch, which, unlike
 * EventSource, can send headers. Only what the change feed uses: `id`,
 * `event`, `data` (several lines joined), comments ignored.
 */

/** One dispatched event; `id` is absent when the event carried none. */
export interface SseMessage {
  id?: string;
  event: string;
  data: string;
}

/** Largest event the parser holds; a stream sending more is broken (the server's events are bounded). */
const MAX_PENDING_CHARS = 64 * 1024 * 1024;

export class SseParser {
  private buffer = '';
  /** How far `buffer` holds no line end: a line that arrives in many chunks is searched once, not again at each. */
  private scanned = 0;
  private id: string | undefined;
  private event = '';
  private data: string[] = [];
  private dataChars = 0;

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseMessage[] {
    this.buffer += text;
    if (this.buffer.length > MAX_PENDING_CHARS) throw new Error('event stream line too long');
    const out: SseMessage[] = [];
    const lineEnd = /\r\n|\r|\n/g;
    lineEnd.lastIndex = this.scanned;
    let start = 0;
    for (;;) {
      const match = lineEnd.exec(this.buffer);
      if (match === null) {
        this.scanned = this.buffer.length;
        break;
      }
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) {
        this.scanned = match.index;
        break;
      }
      const message = this.line(this.buffer.slice(start, match.index));
      start = lineEnd.lastIndex;
      if (message !== null) out.push(message);
    }
    this.buffer = this.buffer.slice(start);
    this.scanned -= start;
    return out;
  }

  private line(line: string): SseMessage | null {
    if (line === '') return this.dispatch();
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') this.id = value;
    else if (field === 'event') this.event = value;
    else if (field === 'data') {
      // Lines of one event: bounded as a line is, or a stream that never ends its event grows without bound.
      this.dataChars += value.length + 1;
      if (this.dataChars > MAX_PENDING_CHARS) throw new Error('event stream event too large');
      this.data.push(value);
    }
    return null;
  }

  private dispatch(): SseMessage | null {
    const message: SseMessage | null = this.data.length === 0 && this.id === undefined
      ? null
      : { ...(this.id === undefined ? {} : { id: this.id }), event: this.event || 'message', data: this.data.join('\n') };
    this.id = undefined;
    this.event = '';
    this.data = [];
    this.dataChars = 0;
    return message;
  }
}
