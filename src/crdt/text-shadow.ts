/**
 * What the ops check knows of a text: its content as it evolves op by op,
 * held as a list of pieces (slices of the stored text and of inserted
 * texts) so that a request of many edits on a long text copies no text.
 *
 * It exists to keep characters whole. Yjs splits a text at UTF-16 offsets;
 * splitting a surrogate pair stores each half as U+FFFD on every replica.
 */

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number): boolean => code >= 0xdc00 && code <= 0xdfff;

export class TextShadow {
  private pieces: string[];
  private size: number;

  constructor(initial: string) {
    this.pieces = initial.length > 0 ? [initial] : [];
    this.size = initial.length;
  }

  /** Length in UTF-16 code units. */
  get length(): number {
    return this.size;
  }

  /** Whether offset `index` falls between the two halves of a surrogate pair. */
  splitsPair(index: number): boolean {
    if (index <= 0 || index >= this.size) return false;
    return isHighSurrogate(this.codeAt(index - 1)) && isLowSurrogate(this.codeAt(index));
  }

  /** Inserts `text` at `index` (0 to length). */
  insert(index: number, text: string): void {
    if (text.length === 0) return;
    this.pieces.splice(this.splitAt(index), 0, text);
    this.size += text.length;
  }

  /** Deletes `length` code units from `index` (the range within the text). */
  delete(index: number, length: number): void {
    if (length === 0) return;
    const from = this.splitAt(index);
    const to = this.splitAt(index + length);
    this.pieces.splice(from, to - from);
    this.size -= length;
  }

  private codeAt(index: number): number {
    let offset = index;
    for (const piece of this.pieces) {
      if (offset < piece.length) return piece.charCodeAt(offset);
      offset -= piece.length;
    }
    return NaN;
  }

  /** Makes `index` a piece boundary; returns the number of the piece that starts there. */
  private splitAt(index: number): number {
    let offset = index;
    for (let k = 0; k < this.pieces.length; k++) {
      const piece = this.pieces[k] as string;
      if (offset === 0) return k;
      if (offset < piece.length) {
        this.pieces.splice(k, 1, piece.slice(0, offset), piece.slice(offset));
        return k + 1;
      }
      offset -= piece.length;
    }
    return this.pieces.length;
  }
}
