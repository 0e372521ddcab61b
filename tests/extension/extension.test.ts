import { FakeTimers, FakeUri, changeConfiguration, fake, resetFake, settle, type FakeExtension } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ClientContext } from '../../vscode-extension/src/client';
import { activate, deactivate } from '../../vscode-extension/src/extension';
import { checkInstalled, type InstallCheck, type ResolvedInterpreter } from '../../vscode-extension/src/interpreter';
import type { ServerHandle, ServerHooks } from '../../vscode-extension/src/supervisor';

interface Started {
    interpreter: ResolvedInterpreter;
    hooks: ServerHooks;
    context: ClientContext;
}

function fakeDeps(check: InstallCheck = { kind: 'installed' }) {
    const started: Started[] = [];
    const deps = {
        timers: new FakeTimers(),
        checkInstalled: () => Promise.resolve(check),
        createServer: (interpreter: ResolvedInterpreter, hooks: ServerHooks, context: ClientContext): ServerHandle => {
            started.push({ interpreter, hooks, context });
            return { start: () => Promise.resolve(), stop: () => Promise.resolve(), sendCommand: () => Promise.resolve(null) };
        },
    };
    return { deps, started };
}

function pythonExtension(path: string): { extension: FakeExtension; changeEnvironment: () => void } {
    const listeners: (() => unknown)[] = [];
    const api = {
        environments: {
            getActiveEnvironmentPath: () => ({ id: path, path }),
            resolveEnvironment: () => Promise.resolve({ executable: { uri: { fsPath: path } } }),
            onDidChangeActiveEnvironmentPath: (listener: () => unknown) => {
                listeners.push(listener);
                return { dispose: () => undefined };
            },
        },
    };
    return {
        extension: { isActive: true, exports: api, activate: () => Promise.resolve(api) },
        changeEnvironment: () => {
            listeners.forEach((listener) => listener());
        },
    };
}

describe('activate', () => {
    beforeEach(async () => {
        await deactivate();
        resetFake();
        fake.workspaceFolders.push({ uri: new FakeUri('/ws'), name: 'ws', index: 0 });
    });

    it('registers the client commands, starts the server and sends the settings', async () => {
        fake.configuration.set('trustfix.interpreter', ['/opt/py/bin/python']);
        fake.configuration.set('trustfix.reviewerId', 'ada');
        fake.configuration.set('trustfix.role', 'student');
        fake.configuration.set('trustfix.topK', 5);
        const { deps, started } = fakeDeps();
        const context = { subscriptions: [] as { dispose(): unknown }[] };
        const supervisor = await activate(context, deps);
        assert.equal(supervisor.state, 'running');
        assert.equal(fake.registered.size, 6);
        assert.equal(fake.registered.has('trustfix.accept'), false);
        assert.equal(started.length, 1);
        assert.deepEqual(started[0]?.interpreter, { command: ['/opt/py/bin/python'], source: 'setting' });
        assert.equal(started[0].context.settings.reviewerId, 'ada');
        assert.equal(started[0].context.settings.role, 'student');
        assert.equal(started[0].context.workspaceFolder?.uri.fsPath, '/ws');
        started[0].hooks.onStatus({ policyVersion: 2, trust: 0.7, reviewer: 'ada' });
        assert.equal(fake.statusBarItems[0]?.text, '$(shield) trustfix v2 · trust 0.70');
        assert.ok(context.subscriptions.length >= 9);
    });

    it('restarts only when trustfix.interpreter changes', async () => {
        const { deps, started } = fakeDeps();
        await activate({ subscriptions: [] }, deps);
        changeConfiguration('trustfix.topK', 4);
        await settle();
        assert.equal(started.length, 1);
        changeConfiguration('trustfix.interpreter', '/other/python');
        await settle();
        assert.equal(started.length, 2);
        assert.deepEqual(started[1]?.interpreter.command, ['/other/python']);
    });

    it("uses the Python extension's environment and follows its changes", async () => {
        const python = pythonExtension('/ws/.venv/bin/python');
        fake.extensions.set('ms-python.python', python.extension);
        const { deps, started } = fakeDeps();
        await activate({ subscriptions: [] }, deps);
        assert.deepEqual(started[0]?.interpreter, { command: ['/ws/.venv/bin/python'], source: 'pythonExtension' });
        python.changeEnvironment();
        await settle();
        assert.equal(started.length, 2);
    });

    it('ignores Python environment changes when trustfix.interpreter is set', async () => {
        const python = pythonExtension('/ws/.venv/bin/python');
        fake.extensions.set('ms-python.python', python.extension);
        fake.configuration.set('trustfix.interpreter', '/opt/py');
        const { deps, started } = fakeDeps();
        await activate({ subscriptions: [] }, deps);
        python.changeEnvironment();
        await settle();
        assert.equal(started.length, 1);
    });
});

describe('activate with a Python that lacks trustfix (real install check)', () => {
    let scratch = '';

    before(() => {
        scratch = mkdtempSync(join(tmpdir(), 'trustfix-ext-'));
        execFileSync('python3', ['-m', 'venv', '--without-pip', join(scratch, 'venv')]);
    });

    after(async () => {
        await deactivate();
        rmSync(scratch, { recursive: true, force: true });
    });

    it('shows "not installed", the install command, and starts nothing', async () => {
        resetFake();
        const python = join(scratch, 'venv', 'bin', 'python');
        fake.configuration.set('trustfix.interpreter', python);
        const timers = new FakeTimers();
        let created = 0;
        const supervisor = await activate(
            { subscriptions: [] },
            {
                timers,
                checkInstalled,
                createServer: () => {
                    created++;
                    throw new Error('must not start');
                },
            },
        );
        assert.equal(supervisor.state, 'notInstalled');
        assert.equal(created, 0);
        assert.equal(fake.statusBarItems[0]?.text, '$(error) trustfix: not installed');
        const [error] = fake.messages;
        assert.equal(error?.level, 'error');
        assert.ok(error.text.endsWith(`Install it with: ${python} -m pip install trustfix`), error.text);
        assert.ok(fake.outputLines.some((line) => line.includes("No module named 'trustfix'")));
        timers.advance(600_000);
        await settle();
        assert.equal(created, 0);
    });
});
