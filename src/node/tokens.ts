import { createHash, timingSafeEqual } from 'node:crypto';

/** A caller's name and secret (`--token NAME=SECRET`; a bare `--token SECRET` is named `default`). */
export interface NamedToken {
  name: string;
  secret: string;
}

const named = /^([A-Za-z0-9_.-]{1,100})=(.+)$/;

/**
 * `--token` flags as named tokens. `NAME=SECRET` names its caller; anything else is one secret
 * named `default` (a secret that itself holds `=` is given as `default=SECRET`).
 */
export function parseTokens(flags: string[]): NamedToken[] {
  const tokens = flags.map((flag) => {
    const m = named.exec(flag);
    return m ? { name: m[1], secret: m[2] } : { name: 'default', secret: flag };
  });
  for (const [k, token] of tokens.entries()) {
    if (!token.secret) throw new Error('--token: a token may not be empty');
    if (tokens.findIndex((t) => t.name === token.name) !== k) throw new Error(`--token: the name ${token.name} is given twice`);
  }
  return tokens;
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * Who may call a node: its named tokens, and the paths `--public` opens to anyone (exactly that
 * path and everything below it, as Racetrack's `public_endpoints`). `/health` is always open.
 */
export class Gate {
  private readonly digests: { name: string; digest: Buffer }[];

  constructor(
    tokens: NamedToken[],
    private readonly publicPaths: string[] = [],
  ) {
    this.digests = tokens.map((t) => ({ name: t.name, digest: digest(t.secret) }));
  }

  /** True when callers must show a token. */
  get closed(): boolean {
    return this.digests.length > 0;
  }

  /** True for a path anyone may call. */
  isPublic(path: string): boolean {
    return path === '/health' || this.publicPaths.some((open) => path === open || path.startsWith(open.endsWith('/') ? open : `${open}/`));
  }

  /**
   * Whether a request with this `Authorization` header may call a path that is not public:
   * `{caller}` (undefined when the node has no tokens) when it may, undefined when it may not.
   */
  admit(authorization: string | undefined): { caller?: string } | undefined {
    if (!this.closed) return {};
    const caller = this.callerOf(authorization);
    return caller === undefined ? undefined : { caller };
  }

  /**
   * The name of the caller whose token an `Authorization: Bearer <token>` header carries;
   * undefined when it matches none. Every token is compared, in constant time each.
   */
  callerOf(authorization: string | undefined): string | undefined {
    const given = digest(authorization?.startsWith('Bearer ') ? authorization.slice(7) : '');
    let caller: string | undefined;
    for (const { name, digest: expected } of this.digests) if (timingSafeEqual(given, expected) && caller === undefined) caller = name;
    return caller;
  }
}
