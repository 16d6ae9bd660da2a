/** The document model's public surface. */
export { putDocument, mergePatch, applyOps, deleteDocument, readDocument, parseOps } from './model.js';
export { validateUpdate, applyUpdateSafely } from './validate.js';
export { docDigest } from './digest.js';
export { stableClientId } from './clientid.js';
