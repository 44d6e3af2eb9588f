// pgtide/http: streams over HTTP, for fetch-style servers and node:http.
export { streamResponse } from "./streamResponse.js";
export type { StreamRequest, StreamResponseOptions } from "./streamResponse.js";
export type { RangeBody } from "./rangeResponse.js";
export { toNodeHandler } from "./toNodeHandler.js";
export type { FetchHandler, NodeHandlerOptions } from "./toNodeHandler.js";
