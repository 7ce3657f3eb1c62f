import type { Redis } from 'ioredis';
import type { Keys } from '../keys.js';
import type { ActivityLog, ActivitySince, LaneState } from './activity.js';

/** One node's second, as every dashboard viewer gets it. */
export interface Tick extends ActivitySince {
  host: string;
  at: number;
  version: string;
  rssMb: number;
  lanes: LaneState[];
}

/** Ticks the feed keeps (at most about 20 MB in Redis): two minutes of a ten-node cluster. */
const feedLength = 1_200;

/**
 * Publishes this node's tick to the cluster's feed (`ks:dashboard`) each second, but only
 * while some node has viewers (`ks:dashboard:watched` exists): with nobody watching, a node
 * costs Redis one EXISTS a second and records no calls.
 */
export class FeedPublisher {
  private timer?: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly ctx: { redis: Redis; keys: Keys; host: string; version: string; activity: ActivityLog; lanes(): string[]; log(message: string): void },
    private readonly periodMs = 1_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const { redis, keys, activity } = this.ctx;
    try {
      const watched = (await redis.exists(keys.dashboardWatched)) === 1;
      activity.watching = watched;
      if (!watched) return;
      const tick: Tick = {
        host: this.ctx.host,
        at: Date.now(),
        version: this.ctx.version,
        rssMb: Math.round(process.memoryUsage.rss() / 1e6),
        lanes: activity.laneStates(this.ctx.lanes()),
        ...activity.take(),
      };
      await redis.xadd(keys.dashboard, 'MAXLEN', '~', feedLength, '*', 'tick', JSON.stringify(tick));
    } catch (error) {
      this.ctx.log(`dashboard feed: ${(error as Error).message}`);
    } finally {
      this.busy = false;
    }
  }
}
