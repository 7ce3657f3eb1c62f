/**
 * kitchensink's TypeScript client: run Python on a Redis-backed cluster of warm interpreters.
 * @packageDocumentation
 */
export { Client, setupClient, getDefaultClient, type ClientOptions, type BrOptions, type Outcome, type Completed, type Profiled, type AllOutcome, type PersistedCallInfo } from './client/client.js';
export { RemoteData, dobj, dr, dp, du, type RemoteDataSource, type SaveOptions, type DataInfo } from './client/remote-data.js';
export { py, type PySource } from './client/py.js';
export type { Straggler } from './client/stragglers.js';
export type { CallProfile } from './profile.js';
export { RemoteError, NodeRequestError } from './errors.js';
export { NDArray, ndarray, type TypedArray } from './ndarray.js';
export type { DataFrame, Series } from './dataframe.js';
export { rankHosts } from './routing.js';
export type { CallOptions, DataFormat, FnSpec, JobSpec, PatternSpec, JobDescription, HostInfo, FailureKind } from './types.js';
