/**
 * When to restart a crashed server: exponential backoff (1 s, 2 s, 4 s, … capped), reset once a
 * run has been stable, and giving up after too many quick crashes in a row. No VS Code here.
 */

export interface BackoffOptions {
    /** Delay before the first restart after a quick crash. */
    initialDelayMs: number;
    /** Each further quick crash multiplies the delay by this. */
    factor: number;
    /** The delay never exceeds this. */
    maxDelayMs: number;
    /** A run that lasted this long was stable: the next crash starts the sequence afresh. */
    stableAfterMs: number;
    /** After this many quick crashes in a row the server is not restarted any more. */
    maxQuickCrashes: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = {
    initialDelayMs: 1_000,
    factor: 2,
    maxDelayMs: 30_000,
    stableAfterMs: 60_000,
    maxQuickCrashes: 5,
};

export type CrashDecision =
    | { kind: 'restart'; delayMs: number; attempt: number }
    | { kind: 'giveUp'; crashes: number };

/** The clock and timer functions the backoff uses; tests pass fake ones. */
export interface Timers {
    now(): number;
    setTimeout(callback: () => void, delayMs: number): unknown;
    clearTimeout(handle: unknown): void;
}

export const realTimers: Timers = {
    now: () => Date.now(),
    setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
    clearTimeout: (handle) => {
        clearTimeout(handle as NodeJS.Timeout);
    },
};

/** The delay before restart number `attempt` (1-based): initial · factor^(attempt-1), capped. */
export function backoffDelay(attempt: number, options: Readonly<BackoffOptions> = DEFAULT_BACKOFF): number {
    return Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** (attempt - 1));
}

/** Counts quick crashes and decides, at each crash, whether and when to restart. */
export class RestartBackoff {
    private quickCrashes = 0;
    private startedAt: number | undefined;

    constructor(
        private readonly now: () => number,
        private readonly options: Readonly<BackoffOptions> = DEFAULT_BACKOFF,
    ) {}

    /** The server has just been started. */
    started(): void {
        this.startedAt = this.now();
    }

    /** The server has crashed: restart after a delay, or give up. */
    crashed(): CrashDecision {
        const ranFor = this.startedAt === undefined ? 0 : this.now() - this.startedAt;
        this.startedAt = undefined;
        if (ranFor >= this.options.stableAfterMs) {
            this.quickCrashes = 0;
        }
        this.quickCrashes += 1;
        if (this.quickCrashes > this.options.maxQuickCrashes) {
            return { kind: 'giveUp', crashes: this.quickCrashes };
        }
        return { kind: 'restart', delayMs: backoffDelay(this.quickCrashes, this.options), attempt: this.quickCrashes };
    }

    /** Forget past crashes (the user restarted the server by hand). */
    reset(): void {
        this.quickCrashes = 0;
        this.startedAt = undefined;
    }
}

/** One pending delayed call at most; scheduling again replaces it. */
export class RestartTimer {
    private handle: unknown;
    private pending = false;

    constructor(private readonly timers: Timers) {}

    schedule(delayMs: number, callback: () => void): void {
        this.cancel();
        this.pending = true;
        this.handle = this.timers.setTimeout(() => {
            this.pending = false;
            callback();
        }, delayMs);
    }

    cancel(): void {
        if (this.pending) {
            this.timers.clearTimeout(this.handle);
            this.pending = false;
        }
    }

    get isPending(): boolean {
        return this.pending;
    }
}
