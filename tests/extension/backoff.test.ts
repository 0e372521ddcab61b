import { FakeTimers } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_BACKOFF, RestartBackoff, RestartTimer, backoffDelay } from '../../vscode-extension/src/backoff';

describe('backoffDelay', () => {
    it('doubles from one second and stops at the cap', () => {
        const delays = [1, 2, 3, 4, 5, 6, 7].map((attempt) => backoffDelay(attempt));
        assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    });
});

describe('RestartBackoff', () => {
    it('backs off on quick crashes and gives up after maxQuickCrashes', () => {
        const clock = new FakeTimers();
        const backoff = new RestartBackoff(clock.now);
        const decisions = [];
        for (let i = 0; i < DEFAULT_BACKOFF.maxQuickCrashes + 1; i++) {
            backoff.started();
            clock.advance(500);
            decisions.push(backoff.crashed());
        }
        assert.deepEqual(decisions.slice(0, 5), [
            { kind: 'restart', delayMs: 1000, attempt: 1 },
            { kind: 'restart', delayMs: 2000, attempt: 2 },
            { kind: 'restart', delayMs: 4000, attempt: 3 },
            { kind: 'restart', delayMs: 8000, attempt: 4 },
            { kind: 'restart', delayMs: 16000, attempt: 5 },
        ]);
        assert.deepEqual(decisions[5], { kind: 'giveUp', crashes: 6 });
    });

    it('starts afresh after a stable run', () => {
        const clock = new FakeTimers();
        const backoff = new RestartBackoff(clock.now);
        for (let i = 0; i < 3; i++) {
            backoff.started();
            backoff.crashed();
        }
        backoff.started();
        clock.advance(DEFAULT_BACKOFF.stableAfterMs);
        assert.deepEqual(backoff.crashed(), { kind: 'restart', delayMs: 1000, attempt: 1 });
    });

    it('a run just short of stable still counts as a quick crash', () => {
        const clock = new FakeTimers();
        const backoff = new RestartBackoff(clock.now);
        backoff.started();
        backoff.crashed();
        backoff.started();
        clock.advance(DEFAULT_BACKOFF.stableAfterMs - 1);
        assert.deepEqual(backoff.crashed(), { kind: 'restart', delayMs: 2000, attempt: 2 });
    });

    it('reset forgets the crashes', () => {
        const clock = new FakeTimers();
        const backoff = new RestartBackoff(clock.now, { ...DEFAULT_BACKOFF, maxQuickCrashes: 1 });
        backoff.crashed();
        assert.equal(backoff.crashed().kind, 'giveUp');
        backoff.reset();
        assert.equal(backoff.crashed().kind, 'restart');
    });
});

describe('RestartTimer', () => {
    it('runs the callback once the delay has passed', () => {
        const timers = new FakeTimers();
        const timer = new RestartTimer(timers);
        let calls = 0;
        timer.schedule(1000, () => calls++);
        timers.advance(999);
        assert.equal(calls, 0);
        assert.equal(timer.isPending, true);
        timers.advance(1);
        assert.equal(calls, 1);
        assert.equal(timer.isPending, false);
    });

    it('cancel and reschedule leave one pending call', () => {
        const timers = new FakeTimers();
        const timer = new RestartTimer(timers);
        const calls: string[] = [];
        timer.schedule(1000, () => calls.push('first'));
        timer.schedule(4000, () => calls.push('second'));
        assert.deepEqual(timers.pendingDelays, [4000]);
        timers.advance(10_000);
        assert.deepEqual(calls, ['second']);
        timer.schedule(1000, () => calls.push('third'));
        timer.cancel();
        timers.advance(10_000);
        assert.deepEqual(calls, ['second']);
    });
});
