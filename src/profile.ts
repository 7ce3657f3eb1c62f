/**
 * A queued call's profile (`br({profile: true})`, kitchensink's `br(profile=True)`): where its
 * time went. The node measures three spans and writes them into the call's end event as one
 * short field (`p`: "wait data run", in ms); the client adds what only it can see.
 */
export interface CallProfile {
  taskId: string;
  /** The host that ran it. */
  host?: string;
  /** From the node queueing it to an interpreter of its host taking it. */
  queueWaitMs: number;
  /** Making its `RemoteData` arguments local (copies from other hosts). */
  dataMs: number;
  /** On the interpreter: the Python call, its output and result. */
  runMs: number;
  /** The rest of `totalMs`: sending, routing, recording the outcome, reading it back. */
  overheadMs: number;
  /** From `execute()` sending the batch to `br()` reading this call's end. */
  totalMs: number;
}

/** The `p` field of an end event. */
export function profileField(queueWaitMs: number, dataMs: number, runMs: number): string {
  return `${round(queueWaitMs)} ${round(dataMs)} ${round(runMs)}`;
}

/** The node's spans in an end event's `p`; those it lacks (cancelled, lost) are 0. */
export function profileSpans(field: string | undefined): Pick<CallProfile, 'queueWaitMs' | 'dataMs' | 'runMs'> {
  const [queueWaitMs, dataMs, runMs] = (field ?? '').split(' ').map((x) => (Number.isFinite(Number(x)) ? Math.max(0, Number(x)) : 0));
  return { queueWaitMs: queueWaitMs ?? 0, dataMs: dataMs ?? 0, runMs: runMs ?? 0 };
}

/** A profile from an end event's `p` and the client's own total. */
export function readProfile(taskId: string, host: string | undefined, field: string | undefined, totalMs: number): CallProfile {
  const spans = profileSpans(field);
  const spent = spans.queueWaitMs + spans.dataMs + spans.runMs;
  const total = round(Math.max(totalMs, spent));
  return { taskId, host, ...spans, overheadMs: round(total - spent), totalMs: total };
}

function round(ms: number): number {
  return Math.round(Math.max(0, ms) * 10) / 10;
}
