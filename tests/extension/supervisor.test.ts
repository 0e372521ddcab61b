import { FakeTimers, settle } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RestartBackoff } from '../../vscode-extension/src/backoff';
import type { InstallCheck, ResolvedInterpreter } from '../../vscode-extension/src/interpreter';
import type { StatusParams } from '../../vscode-extension/src/protocol';
import type { StatusView } from '../../vscode-extension/src/statusbar';
import {
    ServerNotRunningError,
    ServerSupervisor,
    notInstalledMessage,
    type ServerHandle,
    type ServerHooks,
} from '../../vscode-extension/src/supervisor';

class FakeServer implements ServerHandle {
    stopped = false;
    commands: [string, unknown[]][] = [];
    constructor(
        readonly hooks: ServerHooks,
        private readonly failStart: boolean,
    ) {}
    start(): Promise<void> {
        return this.failStart ? Promise.reject(new Error('server exited with code 1')) : Promise.resolve();
    }
    stop(): Promise<void> {
        this.stopped = true;
        return Promise.resolve();
    }
    sendCommand(command: string, args: unknown[]): Promise<unknown> {
        this.commands.push([command, args]);
        return Promise.resolve({ ok: true });
    }
    crash(): void {
        this.hooks.onUnexpectedExit();
    }
}

function harness(options: { check?: InstallCheck; failStarts?: number } = {}) {
    const timers = new FakeTimers();
    const servers: FakeServer[] = [];
    const views: string[] = [];
    const statuses: StatusParams[] = [];
    const errors: { message: string; actions: string[] }[] = [];
    const logs: string[] = [];
    let failStarts = options.failStarts ?? 0;
    let errorChoice: string | undefined;
    const clipboard: string[] = [];
    const interpreter: ResolvedInterpreter = { command: ['/venv/bin/python'], source: 'setting' };
    const supervisor = new ServerSupervisor({
        resolveInterpreter: () => Promise.resolve(interpreter),
        checkInstalled: () => Promise.resolve(options.check ?? { kind: 'installed' }),
        createServer: (_interpreter, hooks) => {
            const server = new FakeServer(hooks, failStarts > 0);
            failStarts--;
            servers.push(server);
            return server;
        },
        timers,
        backoff: new RestartBackoff(timers.now),
        statusBar: {
            show: (view: StatusView) => views.push(view.text),
            update: (status: StatusParams) => statuses.push(status),
            running: () => views.push('running'),
        },
        ui: {
            showError: (message, ...actions) => {
                errors.push({ message, actions });
                return Promise.resolve(errorChoice);
            },
            copyToClipboard: (text) => {
                clipboard.push(text);
                return Promise.resolve();
            },
            openSettings: () => Promise.resolve(),
            showOutput: () => undefined,
        },
        log: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    });
    return {
        supervisor,
        timers,
        servers,
        views,
        statuses,
        errors,
        clipboard,
        setErrorChoice: (choice: string | undefined) => {
            errorChoice = choice;
        },
        /** The last server, which must exist. */
        last: (): FakeServer => {
            const server = servers[servers.length - 1];
            assert.ok(server);
            return server;
        },
    };
}

/** Runs the restart timer and waits for the restart to go through. */
async function advance(h: ReturnType<typeof harness>, ms: number): Promise<void> {
    h.timers.advance(ms);
    await settle();
}

describe('ServerSupervisor', () => {
    it('starts the server once trustfix is installed', async () => {
        const h = harness();
        await h.supervisor.start();
        assert.equal(h.servers.length, 1);
        assert.equal(h.supervisor.state, 'running');
        assert.deepEqual(h.views, ['$(loading~spin) trustfix: starting…', 'running']);
        assert.deepEqual(await h.supervisor.sendCommand('trustfix.trust', []), { ok: true });
        assert.deepEqual(h.last().commands, [['trustfix.trust', []]]);
    });

    it('forwards status notifications of the current server only', async () => {
        const h = harness();
        await h.supervisor.start();
        const first = h.last();
        first.hooks.onStatus({ policyVersion: 1, trust: 0.4, reviewer: 'r' });
        await h.supervisor.restart('test');
        first.hooks.onStatus({ policyVersion: 0, trust: 0, reviewer: 'stale' });
        assert.deepEqual(h.statuses, [{ policyVersion: 1, trust: 0.4, reviewer: 'r' }]);
    });

    it('does not start, nor retry, when trustfix is not installed', async () => {
        const h = harness({ check: { kind: 'notInstalled', detail: "No module named 'trustfix'" } });
        h.setErrorChoice('Copy install command');
        await h.supervisor.start();
        await settle();
        assert.equal(h.servers.length, 0);
        assert.equal(h.supervisor.state, 'notInstalled');
        assert.equal(h.views.at(-1), '$(error) trustfix: not installed');
        assert.equal(h.errors.length, 1);
        assert.match(h.errors[0]?.message ?? '', /Install it with: \/venv\/bin\/python -m pip install trustfix/);
        assert.deepEqual(h.errors[0]?.actions, ['Copy install command', 'Select interpreter', 'Retry']);
        assert.deepEqual(h.clipboard, ['/venv/bin/python -m pip install trustfix']);
        await advance(h, 600_000);
        assert.equal(h.servers.length, 0);
        assert.deepEqual(h.timers.pendingDelays, []);
        await assert.rejects(h.supervisor.sendCommand('trustfix.trust', []), ServerNotRunningError);
    });

    it('restarts after a crash with growing delays, then gives up', async () => {
        const h = harness();
        await h.supervisor.start();
        const delays: number[] = [];
        for (let crash = 0; crash < 5; crash++) {
            h.last().crash();
            assert.equal(h.supervisor.state, 'restartPending');
            assert.equal(h.last().stopped, true);
            const [delay] = h.timers.pendingDelays;
            assert.ok(delay !== undefined);
            delays.push(delay);
            await advance(h, delay - 1);
            assert.equal(h.servers.length, crash + 1, 'no restart before the delay');
            await advance(h, 1);
            assert.equal(h.servers.length, crash + 2);
            assert.equal(h.supervisor.state, 'running');
        }
        assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000]);
        assert.equal(h.views.includes('$(warning) trustfix: restarting in 16 s'), true);
        h.last().crash();
        assert.equal(h.supervisor.state, 'gaveUp');
        assert.deepEqual(h.timers.pendingDelays, []);
        assert.equal(h.views.at(-1), '$(error) trustfix: stopped');
        assert.match(h.errors[0]?.message ?? '', /crashed 6 times in a row/);
        assert.deepEqual(h.errors[0]?.actions, ['Show output', 'Restart']);
    });

    it('a stable run resets the backoff', async () => {
        const h = harness();
        await h.supervisor.start();
        h.last().crash();
        await advance(h, 1000);
        h.last().crash();
        assert.deepEqual(h.timers.pendingDelays, [2000]);
        await advance(h, 2000);
        await advance(h, 120_000);
        h.last().crash();
        assert.deepEqual(h.timers.pendingDelays, [1000]);
    });

    it('counts a failed start as a crash', async () => {
        const h = harness({ failStarts: 2 });
        await h.supervisor.start();
        assert.equal(h.supervisor.state, 'restartPending');
        assert.deepEqual(h.timers.pendingDelays, [1000]);
        await advance(h, 1000);
        assert.deepEqual(h.timers.pendingDelays, [2000]);
        await advance(h, 2000);
        assert.equal(h.supervisor.state, 'running');
        assert.equal(h.servers.length, 3);
    });

    it('ignores a second exit report for the same server', async () => {
        const h = harness();
        await h.supervisor.start();
        const server = h.last();
        server.crash();
        server.crash();
        assert.deepEqual(h.timers.pendingDelays, [1000]);
    });

    it('a manual restart cancels a pending one and forgets the crashes', async () => {
        const h = harness();
        await h.supervisor.start();
        h.last().crash();
        await advance(h, 1000);
        h.last().crash();
        await h.supervisor.restart('user');
        assert.deepEqual(h.timers.pendingDelays, []);
        assert.equal(h.servers.length, 3);
        h.last().crash();
        assert.deepEqual(h.timers.pendingDelays, [1000]);
    });

    it('a restart stops the running server before starting the next', async () => {
        const h = harness();
        await h.supervisor.start();
        const first = h.last();
        await h.supervisor.restart('interpreter changed');
        assert.equal(first.stopped, true);
        assert.equal(h.servers.length, 2);
        // The old server closing now is not a crash.
        first.crash();
        assert.deepEqual(h.timers.pendingDelays, []);
    });

    it('dispose stops the server and prevents scheduled restarts', async () => {
        const h = harness();
        await h.supervisor.start();
        h.last().crash();
        await h.supervisor.dispose();
        await advance(h, 60_000);
        assert.equal(h.servers.length, 1);
        assert.equal(h.supervisor.state, 'stopped');
    });
});

describe('notInstalledMessage', () => {
    it('names the interpreter, where it came from, and the install command', () => {
        assert.equal(
            notInstalledMessage({ command: ['python3'], source: 'default' }, { kind: 'notInstalled', detail: '' }),
            'trustfix is not installed in python3 (the default interpreter). Install it with: python3 -m pip install trustfix',
        );
        assert.match(
            notInstalledMessage({ command: ['/x/python'], source: 'pythonExtension' }, { kind: 'interpreterNotFound', detail: '' }),
            /cannot run the Python interpreter \/x\/python \(the Python extension's active environment\): not found/,
        );
    });
});
