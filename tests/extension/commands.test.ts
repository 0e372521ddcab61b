import { FakeUri, fake, resetFake, settle, type FakeQuickPickItem } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import {
    commentOnSuggestion,
    rateSuggestion,
    refineHere,
    registerCommands,
    rejectSuggestion,
    showTrust,
    validateComment,
    type CommandDeps,
} from '../../vscode-extension/src/commands';
import type { StatusParams } from '../../vscode-extension/src/protocol';
import { SuggestionRecorder } from '../../vscode-extension/src/suggestions';
import { ServerNotRunningError } from '../../vscode-extension/src/supervisor';

/** A trustfix code action as the server sends it: the probability shown in the title and carried in `data`. */
function action(id: string, title: string, probability: number) {
    const shown = `${title} (p=${probability.toFixed(2)})`;
    return {
        title: `trustfix: ${shown}`,
        edit: { id },
        command: { title: shown, command: 'trustfix.accept', arguments: [id] },
        data: { suggestionId: id, probability },
    };
}

interface Harness extends CommandDeps {
    sent: [string, unknown[]][];
    restarts: string[];
    statuses: StatusParams[];
    reply: unknown;
    running: boolean;
}

function harness(): Harness {
    const recorder = new SuggestionRecorder();
    recorder.recordOffered([action('s1', 'Use enumerate', 0.42), action('s2', 'Swap args', 0.20)], 'file:///ws/m.py', 1000);
    recorder.recordOffered([action('s3', 'Negate condition', 0.10)], 'file:///ws/m.py', 2000);
    const h: Harness = {
        sent: [],
        restarts: [],
        statuses: [],
        reply: null,
        running: true,
        recorder,
        now: () => 5000,
        statusBar: { update: (status) => h.statuses.push(status) },
        supervisor: {
            sendCommand: (command, args) => {
                if (!h.running) {
                    return Promise.reject(new ServerNotRunningError());
                }
                h.sent.push([command, args]);
                return Promise.resolve(h.reply);
            },
            restart: (reason) => {
                h.restarts.push(reason);
                return Promise.resolve();
            },
        },
    };
    return h;
}

const byLabel = (label: string) => (items: readonly FakeQuickPickItem[]) => items.find((item) => item.label === label);

describe('registerCommands', () => {
    beforeEach(resetFake);

    it('registers the six client commands and no server command', () => {
        registerCommands(harness());
        assert.deepEqual([...fake.registered.keys()].sort(), [
            'trustfix.commentOnSuggestion',
            'trustfix.rateSuggestion',
            'trustfix.refineHere',
            'trustfix.rejectSuggestion',
            'trustfix.restartServer',
            'trustfix.showTrust',
        ]);
    });

    it('restartServer restarts the server', async () => {
        const h = harness();
        registerCommands(h);
        await fake.registered.get('trustfix.restartServer')?.();
        assert.deepEqual(h.restarts, ['requested by the user']);
    });
});

describe('rejectSuggestion', () => {
    beforeEach(resetFake);

    it('offers recent suggestions with the last accepted one highlighted, and sends trustfix.reject', async () => {
        const h = harness();
        h.recorder.markAccepted('s2');
        await rejectSuggestion(h);
        const [pick] = fake.quickPicks;
        assert.deepEqual(
            pick?.items.map((item) => item.label),
            ['Negate condition', 'Swap args', 'Use enumerate'],
        );
        assert.equal(pick.active[0]?.label, 'Swap args');
        assert.deepEqual(h.sent, [['trustfix.reject', ['s2']]]);
        assert.equal(h.recorder.get('s2')?.state, 'rejected');
        assert.deepEqual(fake.statusBarMessages, ['$(check) trustfix: rejected "Swap args"']);
    });

    it('uses a suggestion id given as argument without asking', async () => {
        const h = harness();
        await rejectSuggestion(h, 's1');
        assert.equal(fake.quickPicks.length, 0);
        assert.deepEqual(h.sent, [['trustfix.reject', ['s1']]]);
    });

    it('sends nothing when the pick is dismissed', async () => {
        const h = harness();
        fake.quickPickChoice = () => undefined;
        await rejectSuggestion(h);
        assert.deepEqual(h.sent, []);
        assert.equal(h.recorder.get('s3')?.state, 'offered');
    });

    it('says so when there are no suggestions yet', async () => {
        const h = { ...harness(), recorder: new SuggestionRecorder() };
        await rejectSuggestion(h);
        assert.equal(fake.messages[0]?.level, 'information');
        assert.match(fake.messages[0].text, /no suggestions yet/);
    });

    it('offers a restart when the server is not running', async () => {
        const h = harness();
        h.running = false;
        fake.messageChoice = (message) => message.actions[0];
        await rejectSuggestion(h, 's1');
        assert.equal(fake.messages[0]?.level, 'warning');
        assert.equal(fake.messages[0].text, 'trustfix: the language server is not running.');
        assert.deepEqual(h.restarts, ['requested by the user']);
        assert.equal(h.recorder.get('s1')?.state, 'offered');
    });
});

describe('rateSuggestion', () => {
    beforeEach(resetFake);

    it('asks for a score from 1 to 5 and sends trustfix.rate', async () => {
        const h = harness();
        fake.quickPickChoice = (items, active) => byLabel('4')(items) ?? active[0];
        await rateSuggestion(h);
        const scorePick = fake.quickPicks[1];
        assert.deepEqual(
            scorePick?.items.map((item) => item.label),
            ['1', '2', '3', '4', '5'],
        );
        assert.equal(scorePick.placeholder, 'Rate "Negate condition" from 1 (wrong) to 5 (excellent)');
        assert.deepEqual(h.sent, [['trustfix.rate', ['s3', 4]]]);
        assert.equal(h.recorder.get('s3')?.rating, 4);
    });

    it('takes id and score as arguments', async () => {
        const h = harness();
        await rateSuggestion(h, 's1', 2);
        assert.equal(fake.quickPicks.length, 0);
        assert.deepEqual(h.sent, [['trustfix.rate', ['s1', 2]]]);
    });

    it('refuses a score outside 1–5 given as argument', async () => {
        const h = harness();
        await assert.rejects(rateSuggestion(h, 's1', 9), /integer from 1 to 5/);
        assert.deepEqual(h.sent, []);
    });
});

describe('commentOnSuggestion', () => {
    beforeEach(resetFake);

    it('asks for the text in an input box and sends trustfix.comment', async () => {
        const h = harness();
        fake.inputBoxValue = '  the loop bound is off by one  ';
        await commentOnSuggestion(h, 's1');
        assert.equal(fake.inputBoxes[0]?.title, 'Comment on "Use enumerate"');
        assert.deepEqual(h.sent, [['trustfix.comment', ['s1', 'the loop bound is off by one']]]);
        assert.equal(h.recorder.get('s1')?.commented, true);
    });

    it('the input box refuses an empty comment', () => {
        assert.equal(validateComment('  '), 'a comment cannot be empty');
        assert.equal(validateComment('fine'), undefined);
    });

    it('sends nothing when the input box is cancelled', async () => {
        const h = harness();
        fake.inputBoxValue = undefined;
        await commentOnSuggestion(h, 's1');
        assert.deepEqual(h.sent, []);
    });
});

describe('showTrust', () => {
    beforeEach(resetFake);

    it('asks the server, shows the message and refreshes the status bar', async () => {
        const h = harness();
        h.reply = { reviewer: 'ada', trust: 0.82, alpha: 8.2, beta: 1.8, policyVersion: 12, lastFeedback: 'accepted "Use enumerate"' };
        await showTrust(h);
        assert.deepEqual(h.sent, [['trustfix.trust', []]]);
        assert.deepEqual(h.statuses, [{ policyVersion: 12, trust: 0.82, reviewer: 'ada' }]);
        assert.equal(fake.messages[0]?.level, 'information');
        assert.equal(
            fake.messages[0].text,
            'trustfix — You (ada): trust 0.82 (α 8.2, β 1.8). Policy version 12. Last feedback: accepted "Use enumerate"',
        );
    });

    it('reports a malformed reply as an error', async () => {
        const h = harness();
        h.reply = { trust: 2 };
        await showTrust(h);
        assert.equal(fake.messages[0]?.level, 'error');
        assert.deepEqual(h.statuses, []);
    });
});

describe('refineHere', () => {
    beforeEach(resetFake);

    it('asks for refactor.rewrite actions at the cursor and applies the chosen trustfix one', async () => {
        const uri = new FakeUri('/ws/m.py');
        const selection = { start: 3, end: 3 };
        fake.activeTextEditor = { document: { uri }, selection };
        let request: unknown[] = [];
        fake.builtinCommands.set('vscode.executeCodeActionProvider', (...args) => {
            request = args;
            return [{ title: 'Extract method', edit: {} }, action('a', 'Use enumerate', 0.61), action('b', 'Swap args', 0.22)];
        });
        fake.quickPickChoice = byLabel('Swap args');
        await refineHere();
        await settle();
        assert.deepEqual(request, [uri, selection, 'refactor.rewrite', 20]);
        assert.deepEqual(
            fake.quickPicks[0]?.items.map((item) => [item.label, (item as { description?: string }).description]),
            [
                ['Use enumerate', 'p=0.61'],
                ['Swap args', 'p=0.22'],
            ],
        );
        assert.deepEqual(fake.appliedEdits, [{ id: 'b' }]);
        assert.deepEqual(fake.executed.at(-1), { command: 'trustfix.accept', args: ['b'] });
    });

    it('says so when the server has nothing to offer', async () => {
        fake.activeTextEditor = { document: { uri: new FakeUri('/ws/m.py') }, selection: {} };
        fake.builtinCommands.set('vscode.executeCodeActionProvider', () => [{ title: 'Extract method' }]);
        await refineHere();
        assert.equal(fake.messages[0]?.text, 'trustfix: no refinements for the code at the cursor.');
        assert.equal(fake.quickPicks.length, 0);
    });

    it('needs an editor', async () => {
        await refineHere();
        assert.match(fake.messages[0]?.text ?? '', /open a Python file/);
    });
});
