/**
 * One catalogue of the errors a caller can see: a stable code and an HTTP
 * status each. 4xx codes are the caller's mistakes; 5xx are the node's own.
 */
export const ERRORS = {
  bad_request: 400,
  invalid_json: 400,
  invalid_name: 400,
  invalid_body: 400,
  invalid_ops: 400,
  invalid_update: 400,
  invalid_token: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  request_timeout: 408,
  type_mismatch: 409,
  client_id_conflict: 409,
  quota_exceeded: 403,
  body_too_large: 413,
  too_complex: 413,
  unsupported_media_type: 415,
  too_many_requests: 429,
  internal: 500,
  lagging: 503,
  unavailable: 503,
  quorum_timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class MeridianError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MeridianError';
    this.status = ERRORS[code];
  }
}
