import { BadRequest, UnknownEnvironment, type HttpError } from '../errors.js';
import { callQueue } from '../keys.js';
import { isJobSpec, type HostInfo, type WireCall } from '../types.js';

/**
 * Why no live host takes a call: the environment nobody has (naming those the live nodes
 * have), the job nobody loaded, or the queue nobody serves (as `otherwise` makes it).
 */
export function unservedError(call: WireCall, hosts: HostInfo[], where = '', otherwise: (message: string) => HttpError = (m) => new BadRequest(m)): HttpError {
  const env = call.opts?.env;
  if (env) {
    const known = [...new Set(hosts.flatMap((h) => h.queues.filter((q) => q.startsWith('env.')).map((q) => q.slice('env.'.length))))].sort();
    return new UnknownEnvironment(`${where}no live node has environment ${JSON.stringify(env)} (ks start --env ${env}=PYTHON); ${known.length ? `the live nodes have: ${known.join(', ')}` : 'no live node has any --env'}`);
  }
  if (isJobSpec(call.fn) && !call.opts?.queue) return otherwise(`${where}no live node loaded job ${JSON.stringify(call.fn.job)}`);
  return otherwise(`${where}no live host serves queue ${JSON.stringify(callQueue(call))}`);
}
