// The public surface of pgtide.
export { Engine } from "./engine.js";
export type {
  EngineEvents, Notification, ReadOptions, ReadStreamOptions, StartOptions, Workflow,
} from "./engine.js";
export type { EngineOptions, ErrorClass } from "./config.js";
export type { Entry as StreamEntry } from "./streams/feed.js";
export type { Progress, StepOptions, WorkflowContext } from "./workflow/context.js";
export { WorkflowHandle } from "./workflow/handle.js";
export type { WorkflowRow, WorkflowStatus } from "./workflow/store.js";
export {
  ConnectionError, DatabaseError, EmbeddedPostgresError, EngineClosedError, InvalidArgumentError,
  NonDeterminismError, PgtideError, SerializationError, StreamClosedError,
  WorkflowCancelledError, WorkflowConflictError, WorkflowFinishedError,
  WorkflowNotFoundError, WorkflowNotRegisteredError,
} from "./errors.js";
export type { ErrorCode } from "./errors.js";
