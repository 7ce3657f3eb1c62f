import type { NDArray } from './ndarray.js';

/**
 * How a pandas column or index arrives: an NDArray when numpy holds it plainly (numbers, bool,
 * datetime64 as int64 counts of the dtype's unit), else a list with `null` for missing values
 * (strings, categories, nullable integers).
 */
export type Column = NDArray | unknown[];

/** A pandas `DataFrame` returned from Python: column names in order, the index, and each column. */
export interface DataFrame {
  columns: string[];
  index: Column;
  data: Record<string, Column>;
}

/** A pandas `Series` returned from Python. */
export interface Series {
  name: string | null;
  index: Column;
  data: Column;
}
