/**
 * Identifiers shared by every layer. Branded so that a region name cannot be
 * passed where a writer id is expected.
 */

/** A region's configured name, e.g. `us-east`. */
export type RegionId = string & { readonly __region: true };

/**
 * One incarnation of a region's data directory: `<region>~<random>`. A region
 * that starts on an empty or restored data directory gets a new writer id, so
 * its log sequence numbers, counter slots and Yjs client ids never collide with
 * those of an earlier incarnation.
 */
export type WriterId = string & { readonly __writer: true };

/** `<collection>/<id>`; both parts match {@link NAME_PATTERN}. */
export type DocKey = string & { readonly __docKey: true };

/** Collection and document id: 1-128 characters of `[A-Za-z0-9._~-]`. */
export const NAME_PATTERN = /^[A-Za-z0-9._~-]{1,128}$/;

export function isValidName(s: string): boolean {
  return NAME_PATTERN.test(s);
}

export function docKey(collection: string, id: string): DocKey {
  return `${collection}/${id}` as DocKey;
}

export function splitDocKey(key: DocKey): { collection: string; id: string } {
  const slash = key.indexOf('/');
  return { collection: key.slice(0, slash), id: key.slice(slash + 1) };
}

/**
 * What a writer id can be: a region name (`^[a-z0-9-]{1,32}$`, as configs
 * require), `~`, and hex (regions draw 12 digits). Writer ids travel
 * in every version vector and version token; one a peer made up (any bytes,
 * any length) would be stored and relayed for good.
 */
const WRITER_PATTERN = /^[a-z0-9-]{1,32}~[0-9a-f]{1,32}$/;

export function isWriterId(s: string): boolean {
  return WRITER_PATTERN.test(s);
}

export function regionOfWriter(writer: WriterId): RegionId {
  const tilde = writer.lastIndexOf('~');
  return (tilde < 0 ? writer : writer.slice(0, tilde)) as RegionId;
}

/**
 * Version vector: for each writer, the highest sequence number whose entries
 * (1..n, all of them) this region has applied.
 */
export type VersionVector = Map<WriterId, number>;
