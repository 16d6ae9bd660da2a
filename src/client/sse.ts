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
  private id: string | undefined;
  private event = '';
  private data: string[] = [];
  private dataChars = 0;

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseMessage[] {
    this.buffer += text;
    if (this.buffer.length > MAX_PENDING_CHARS) throw new Error('event stream line too long');
    const out: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (match === null || (match[0] === '\r' && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.line(line);
      if (message !== null) out.push(message);
    }
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
