import { FakeUri, fake, resetFake } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import {
    expandVariables,
    getSettings,
    readSettings,
    toInitializationOptions,
    type VariableContext,
} from '../../vscode-extension/src/settings';

const context: VariableContext = { workspaceFolder: '/ws', userHome: '/home/ada', env: { VENV: '/opt/venv' } };

function reader(values: Record<string, unknown>) {
    return { get: (key: string): unknown => values[key] };
}

describe('readSettings', () => {
    it('has the documented defaults', () => {
        assert.deepEqual(readSettings(reader({}), context), {
            interpreter: [],
            reviewerId: '',
            role: 'developer',
            trainerEndpoint: '',
            topK: 3,
            telemetry: 'all',
            traceServer: 'off',
        });
    });

    it('reads valid values', () => {
        const settings = readSettings(
            reader({
                interpreter: ['${env:VENV}/bin/python', '-X', 'utf8'],
                reviewerId: ' ada ',
                role: 'instructor',
                trainerEndpoint: 'tcp://127.0.0.1:5555',
                topK: 5,
                telemetry: 'noCode',
                'trace.server': 'verbose',
            }),
            context,
        );
        assert.deepEqual(settings.interpreter, ['/opt/venv/bin/python', '-X', 'utf8']);
        assert.equal(settings.reviewerId, 'ada');
        assert.equal(settings.role, 'instructor');
        assert.equal(settings.trainerEndpoint, 'tcp://127.0.0.1:5555');
        assert.equal(settings.topK, 5);
        assert.equal(settings.telemetry, 'noCode');
        assert.equal(settings.traceServer, 'verbose');
    });

    it('falls back to defaults for malformed values', () => {
        const settings = readSettings(
            reader({ role: 'admin', telemetry: true, topK: 'many', 'trace.server': 'loud', interpreter: 42 }),
            context,
        );
        assert.equal(settings.role, 'developer');
        assert.equal(settings.telemetry, 'all');
        assert.equal(settings.topK, 3);
        assert.equal(settings.traceServer, 'off');
        assert.deepEqual(settings.interpreter, []);
    });

    it('clamps and rounds topK', () => {
        assert.equal(readSettings(reader({ topK: 0 }), context).topK, 1);
        assert.equal(readSettings(reader({ topK: 500 }), context).topK, 20);
        assert.equal(readSettings(reader({ topK: 2.6 }), context).topK, 3);
    });

    it('takes a string interpreter as one path and drops blank parts', () => {
        assert.deepEqual(readSettings(reader({ interpreter: ' ~/py/bin/python ' }), context).interpreter, [
            '/home/ada/py/bin/python',
        ]);
        assert.deepEqual(readSettings(reader({ interpreter: ['', '  '] }), context).interpreter, []);
        assert.deepEqual(readSettings(reader({ interpreter: '' }), context).interpreter, []);
    });
});

describe('expandVariables', () => {
    it('expands workspaceFolder, userHome and env variables', () => {
        assert.equal(expandVariables('${workspaceFolder}/.venv/bin/python', context), '/ws/.venv/bin/python');
        assert.equal(expandVariables('${userHome}/x', context), '/home/ada/x');
        assert.equal(expandVariables('${env:MISSING}x', context), 'x');
        assert.equal(expandVariables('a~b', context), 'a~b');
    });

    it('leaves ${workspaceFolder} alone without a folder', () => {
        assert.equal(
            expandVariables('${workspaceFolder}/p', { ...context, workspaceFolder: undefined }),
            '${workspaceFolder}/p',
        );
    });
});

describe('toInitializationOptions', () => {
    it('holds exactly the five settings the server acts on', () => {
        const options = toInitializationOptions(readSettings(reader({ reviewerId: 'ada', topK: 4 }), context));
        assert.deepEqual(options, {
            reviewerId: 'ada',
            role: 'developer',
            trainerEndpoint: '',
            topK: 4,
            telemetry: 'all',
        });
    });
});

describe('getSettings', () => {
    beforeEach(resetFake);

    it('reads the trustfix section for the first workspace folder', () => {
        const folder = new FakeUri('/work/project');
        fake.workspaceFolders.push({ uri: folder, name: 'project', index: 0 });
        fake.configuration.set('trustfix.interpreter', '${workspaceFolder}/.venv/bin/python');
        fake.configuration.set('trustfix.topK', 7);
        const settings = getSettings();
        assert.deepEqual(settings.interpreter, ['/work/project/.venv/bin/python']);
        assert.equal(settings.topK, 7);
        assert.equal(fake.configurationScopes[0], folder);
    });
});
