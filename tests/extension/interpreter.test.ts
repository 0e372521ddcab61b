import { FakeUri, fake, resetFake, type FakeExtension } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
    PYTHON_EXTENSION_ID,
    checkInstalled,
    commandLine,
    getPythonExtensionApi,
    installCommand,
    resolveInterpreter,
    serverCommand,
    type PythonExtensionApi,
} from '../../vscode-extension/src/interpreter';

/** The project's Python, which has trustfix installed (TRUSTFIX_PYTHON, else the repository's .venv). */
export const projectPython = process.env.TRUSTFIX_PYTHON ?? resolve(process.cwd(), '..', '.venv', 'bin', 'python');

function fakePythonApi(path: string, executable: string | undefined): PythonExtensionApi & { calls: unknown[] } {
    const calls: unknown[] = [];
    return {
        calls,
        environments: {
            getActiveEnvironmentPath: (resource) => {
                calls.push(resource);
                return { id: 'env', path };
            },
            resolveEnvironment: () =>
                Promise.resolve({ executable: { uri: executable === undefined ? undefined : { fsPath: executable } } }),
            onDidChangeActiveEnvironmentPath: () => ({ dispose: () => undefined }),
        },
    };
}

describe('resolveInterpreter', () => {
    it('prefers trustfix.interpreter', async () => {
        const api = fakePythonApi('/env/bin/python', '/env/bin/python');
        assert.deepEqual(await resolveInterpreter(['/opt/py', '-I'], api), { command: ['/opt/py', '-I'], source: 'setting' });
        assert.deepEqual(api.calls, []);
    });

    it("uses the Python extension's active environment next", async () => {
        const api = fakePythonApi('/env', '/env/bin/python3.12');
        const folder = new FakeUri('/ws');
        assert.deepEqual(await resolveInterpreter([], api, folder as never), {
            command: ['/env/bin/python3.12'],
            source: 'pythonExtension',
        });
        assert.equal(api.calls[0], folder);
    });

    it('falls back to the environment path when it cannot be resolved', async () => {
        const api = fakePythonApi('/env/bin/python', undefined);
        assert.deepEqual((await resolveInterpreter([], api)).command, ['/env/bin/python']);
    });

    it('falls back to python3 without the Python extension', async () => {
        assert.deepEqual(await resolveInterpreter([], undefined), { command: ['python3'], source: 'default' });
    });
});

describe('getPythonExtensionApi', () => {
    beforeEach(resetFake);

    it('is undefined when ms-python.python is not installed', async () => {
        assert.equal(await getPythonExtensionApi(), undefined);
    });

    it('activates the Python extension and returns its API', async () => {
        const api = fakePythonApi('/env/bin/python', '/env/bin/python');
        let activations = 0;
        const extension: FakeExtension = {
            isActive: false,
            exports: undefined,
            activate: () => {
                activations++;
                return Promise.resolve(api);
            },
        };
        fake.extensions.set(PYTHON_EXTENSION_ID, extension);
        assert.equal(await getPythonExtensionApi(), api);
        assert.equal(activations, 1);
    });

    it('ignores an extension whose API lacks environments', async () => {
        fake.extensions.set(PYTHON_EXTENSION_ID, { isActive: true, exports: { ready: true }, activate: () => Promise.resolve() });
        assert.equal(await getPythonExtensionApi(), undefined);
    });
});

describe('server and install commands', () => {
    it('starts the server as <interpreter> -m trustfix serve', () => {
        assert.deepEqual(serverCommand(['/v/bin/python']), { command: '/v/bin/python', args: ['-m', 'trustfix', 'serve'] });
        assert.deepEqual(serverCommand(['uv', 'run', 'python']), {
            command: 'uv',
            args: ['run', 'python', '-m', 'trustfix', 'serve'],
        });
        assert.throws(() => serverCommand([]), /empty interpreter/);
    });

    it('builds a copyable install command, quoting where needed', () => {
        assert.equal(installCommand(['python3']), 'python3 -m pip install trustfix');
        assert.equal(installCommand(['/My Py/python']), "'/My Py/python' -m pip install trustfix");
        assert.equal(commandLine(["it's"]), `'it'\\''s'`);
    });
});

describe('checkInstalled (real interpreters)', () => {
    let scratch = '';
    let bareVenvPython = '';

    before(() => {
        scratch = mkdtempSync(join(tmpdir(), 'trustfix-ext-'));
        execFileSync('python3', ['-m', 'venv', '--without-pip', join(scratch, 'venv')]);
        bareVenvPython = join(scratch, 'venv', 'bin', 'python');
    });

    after(() => {
        rmSync(scratch, { recursive: true, force: true });
    });

    it('finds trustfix in the project interpreter', { skip: !existsSync(projectPython) && 'no project .venv' }, async () => {
        assert.deepEqual(await checkInstalled([projectPython]), { kind: 'installed' });
    });

    it('says trustfix is missing from a bare virtual environment', async () => {
        const check = await checkInstalled([bareVenvPython]);
        assert.deepEqual(check, { kind: 'notInstalled', detail: "ModuleNotFoundError: No module named 'trustfix'" });
    });

    it('passes the interpreter arguments before -c', { skip: !existsSync(projectPython) && 'no project .venv' }, async () => {
        // -S skips site-packages, where trustfix lives: only an option placed before -c takes effect.
        assert.equal((await checkInstalled([projectPython, '-S'])).kind, 'notInstalled');
    });

    it('tells a missing interpreter apart', async () => {
        const check = await checkInstalled([join(scratch, 'no', 'python')]);
        assert.equal(check.kind, 'interpreterNotFound');
    });
});
