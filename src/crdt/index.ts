/** The document model's public surface. */
export { putDocument, mergePatch, applyOps, opsOnlyDelete, deleteDocument, readDocument, parseOps } from './model.js';
export { documentHoldsContent } from './read.js';
export { validateUpdate, applyUpdateSafely, applyValidated, replayValidated, heldStateVector, pendingMark, type DecodedUpdate } from './validate.js';
export { combineDigest, digestParts, docDigest, type DigestParts } from './digest.js';
export { REGION_CLIENT_BASE, freshRegionClientId, isRegionClient, newDoc, stableClientId } from './clientid.js';
export { CostlyLoad, appliedWithinBound, mayHaveDiverged, type DivergeRisk, placedOf, buildMsOf, costlyLoad, loadDoc, loadDocOrNull, loadsWithinBound, mayCollide, mergeMany, rebuiltDocs, refusedDocLoads, reloadedIfDiverged, reloadedSettled, splitsMapEntry, structsHeld } from './load.js';
export { admitClientUpdate, namesOneStruct } from './admit.js';
export { withPlacementBudget, MAX_PLACEMENT_STEPS } from './placement.js';
