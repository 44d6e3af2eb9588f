// Every error pgtide throws is a PgtideError with a stable `code`, so callers can branch
// on `err.code` (or `instanceof`) without parsing messages.

export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "SERIALIZATION"
  | "STREAM_CLOSED"
  | "WORKFLOW_NOT_FOUND"
  | "WORKFLOW_NOT_REGISTERED"
  | "WORKFLOW_CONFLICT"
  | "WORKFLOW_CANCELLED"
  | "WORKFLOW_FINISHED"
  | "NON_DETERMINISM"
  | "CONNECTION"
  | "DATABASE"
  | "ENGINE_CLOSED"
  | "EMBEDDED_POSTGRES";

export class PgtideError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A bad id, key, offset, option or schema name. Nothing was written. */
export class InvalidArgumentError extends PgtideError {
  constructor(message: string) {
    super("INVALID_ARGUMENT", message);
  }
}

/** A value JSON cannot represent faithfully, or one past the size limit. Nothing was written. */
export class SerializationError extends PgtideError {
  constructor(message: string) {
    super("SERIALIZATION", message);
  }
}

export class StreamClosedError extends PgtideError {
  constructor(readonly workflowId: string, readonly key: string) {
    super("STREAM_CLOSED", `stream "${key}" of workflow "${workflowId}" is closed`);
  }
}

export class WorkflowNotFoundError extends PgtideError {
  constructor(readonly workflowId: string) {
    super("WORKFLOW_NOT_FOUND", `workflow "${workflowId}" does not exist`);
  }
}

/** No function is registered under the workflow's name in this engine. */
export class WorkflowNotRegisteredError extends PgtideError {
  constructor(readonly workflowNames: string[], detail = "") {
    super(
      "WORKFLOW_NOT_REGISTERED",
      `no workflow registered as ${workflowNames.map((n) => `"${n}"`).join(", ")}${detail}`,
    );
  }
}

/** A workflow id already belongs to a workflow of another name. */
export class WorkflowConflictError extends PgtideError {
  constructor(readonly workflowId: string, existingName: string, requestedName: string) {
    super(
      "WORKFLOW_CONFLICT",
      `workflow "${workflowId}" already exists as "${existingName}", not "${requestedName}"`,
    );
  }
}

export class WorkflowCancelledError extends PgtideError {
  constructor(readonly workflowId: string) {
    super("WORKFLOW_CANCELLED", `workflow "${workflowId}" was cancelled`);
  }
}

/** The workflow already reached SUCCESS or ERROR; its context can no longer write. */
export class WorkflowFinishedError extends PgtideError {
  constructor(readonly workflowId: string, status: string) {
    super("WORKFLOW_FINISHED", `workflow "${workflowId}" has finished (${status}); its context can no longer be used`);
  }
}

/** A replayed workflow called its steps in another order than when they were recorded. */
export class NonDeterminismError extends PgtideError {
  constructor(message: string) {
    super("NON_DETERMINISM", message);
  }
}

/**
 * Postgres could not be reached (or kept failing for a passing reason: restarting, out of
 * connections) for longer than `retryTimeoutMs`. Nothing is lost: retry later.
 */
export class ConnectionError extends PgtideError {
  constructor(message: string, cause?: unknown) {
    super("CONNECTION", message, { cause });
  }
}

/**
 * Postgres refused one of pgtide's statements for a reason that is neither the caller's
 * input nor an outage (e.g. the schema was altered by hand). `cause` holds the driver's error.
 */
export class DatabaseError extends PgtideError {
  constructor(message: string, cause?: unknown) {
    super("DATABASE", message, { cause });
  }
}

export class EngineClosedError extends PgtideError {
  constructor() {
    super("ENGINE_CLOSED", "the engine is closed");
  }
}

export class EmbeddedPostgresError extends PgtideError {
  constructor(message: string, cause?: unknown) {
    super("EMBEDDED_POSTGRES", message, { cause });
  }
}
