import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
    ClientCommands,
    ServerCommands,
    commentArguments,
    formatTrustMessage,
    actionProbability,
    actionTitle,
    parseStatusParams,
    parseTrustReply,
    rateArguments,
    rejectArguments,
} from '../../vscode-extension/src/protocol';

interface Manifest {
    main: string;
    engines: { vscode: string };
    devDependencies: Record<string, string>;
    contributes: { commands: { command: string }[]; configuration: { properties: Record<string, unknown> } };
}

const manifest = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as Manifest;

describe('command ids', () => {
    it('the manifest contributes exactly the client commands', () => {
        const contributed = manifest.contributes.commands.map((entry) => entry.command).sort();
        assert.deepEqual(contributed, Object.values(ClientCommands).sort());
    });

    it('no client command reuses a server command id', () => {
        const server = new Set<string>(Object.values(ServerCommands));
        assert.deepEqual(
            Object.values(ClientCommands).filter((id) => server.has(id)),
            [],
        );
    });

    it('the manifest declares every setting the extension reads', () => {
        assert.deepEqual(Object.keys(manifest.contributes.configuration.properties).sort(), [
            'trustfix.interpreter',
            'trustfix.reviewerId',
            'trustfix.role',
            'trustfix.telemetry',
            'trustfix.topK',
            'trustfix.trace.server',
            'trustfix.trainerEndpoint',
        ]);
    });

    it('keeps @types/vscode within engines.vscode', () => {
        const minor = (range: string | undefined): number => Number(/1\.(\d+)/.exec(range ?? '')?.[1]);
        assert.ok(minor(manifest.devDependencies['@types/vscode']) <= minor(manifest.engines.vscode));
    });
});

describe('server command arguments', () => {
    it('reject sends the suggestion id', () => {
        assert.deepEqual(rejectArguments('s-1'), ['s-1']);
        assert.throws(() => rejectArguments(' '), /not a suggestion id/);
    });

    it('rate sends an integer score from 1 to 5', () => {
        assert.deepEqual(rateArguments('s-1', 5), ['s-1', 5]);
        assert.deepEqual(rateArguments('s-1', 1), ['s-1', 1]);
        for (const bad of [0, 6, 2.5, Number.NaN]) {
            assert.throws(() => rateArguments('s-1', bad), /integer from 1 to 5/);
        }
    });

    it('comment sends the trimmed text and refuses empty or huge ones', () => {
        assert.deepEqual(commentArguments('s-1', '  use a set here \n'), ['s-1', 'use a set here']);
        assert.throws(() => commentArguments('s-1', '   '), /cannot be empty/);
        assert.throws(() => commentArguments('s-1', 'x'.repeat(2001)), /at most 2000/);
    });
});

describe('server messages', () => {
    it('accepts a well-formed trustfix/status and rejects others', () => {
        assert.deepEqual(parseStatusParams({ policyVersion: 3, trust: 0.5, reviewer: 'r1', extra: 1 }), {
            policyVersion: 3,
            trust: 0.5,
            reviewer: 'r1',
        });
        assert.deepEqual(parseStatusParams({ policyVersion: null, trust: null, reviewer: '' }), {
            policyVersion: null,
            trust: null,
            reviewer: '',
        });
        assert.equal(parseStatusParams({ policyVersion: '3', trust: 0.5, reviewer: 'r1' }), undefined);
        assert.equal(parseStatusParams({ policyVersion: 3, trust: 0.5 }), undefined);
        assert.equal(parseStatusParams(null), undefined);
    });

    it('reads the reply of trustfix.trust', () => {
        const reply = { reviewer: 'r1', trust: 0.82, alpha: 8.2, beta: 1.8, policyVersion: 12, lastFeedback: null };
        assert.deepEqual(parseTrustReply(reply), reply);
        assert.equal(parseTrustReply({ ...reply, lastFeedback: undefined }).lastFeedback, null);
        assert.throws(() => parseTrustReply({ ...reply, trust: 'high' }), /unexpected reply to trustfix.trust/);
    });

    it('strips the prefix and the shown probability from a code action title', () => {
        assert.equal(actionTitle('trustfix: Use enumerate (p=0.42)'), 'Use enumerate');
        assert.equal(actionTitle('trustfix: Fix off-by-one in range()'), 'Fix off-by-one in range()');
        assert.equal(actionTitle('trustfix: swap - for + ✓ 3/3 tests (p=.07)'), 'swap - for + ✓ 3/3 tests');
    });

    it("reads the probability from the action's data, not its title", () => {
        assert.equal(actionProbability({ data: { suggestionId: 's', probability: 0.42 } }), 0.42);
        assert.equal(actionProbability({ data: { suggestionId: 's' } }), undefined);
        assert.equal(actionProbability({ data: { probability: '0.4' } }), undefined);
        assert.equal(actionProbability({ data: null }), undefined);
        assert.equal(actionProbability({}), undefined);
    });
});

describe('formatTrustMessage', () => {
    it('shows trust, alpha and beta, the policy version and the last feedback', () => {
        const text = formatTrustMessage({
            reviewer: 'r1',
            trust: 0.8234,
            alpha: 8.2,
            beta: 1.8,
            policyVersion: 12,
            lastFeedback: 'your rejection of "Swap < for <=" agreed with the tests: trust 0.80 → 0.82',
        });
        assert.equal(
            text,
            'trustfix — You (r1): trust 0.82 (α 8.2, β 1.8). Policy version 12. ' +
                'Last feedback: your rejection of "Swap < for <=" agreed with the tests: trust 0.80 → 0.82',
        );
    });

    it('explains what is missing for a new reviewer', () => {
        const text = formatTrustMessage({
            reviewer: '',
            trust: null,
            alpha: null,
            beta: null,
            policyVersion: null,
            lastFeedback: null,
        });
        assert.equal(
            text,
            'trustfix — You: no trust estimate yet — give some feedback first. No policy version published yet. No feedback recorded yet.',
        );
    });
});
