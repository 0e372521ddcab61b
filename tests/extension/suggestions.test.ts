import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
    SuggestionRecorder,
    formatAge,
    recordingMiddleware,
    suggestionIdOf,
    suggestionPickItems,
} from '../../vscode-extension/src/suggestions';

function action(id: string, title: string, probability?: number) {
    const shown = probability === undefined ? title : `${title} (p=${probability.toFixed(2)})`;
    return {
        title: `trustfix: ${shown}`,
        kind: 'refactor.rewrite',
        command: { title: shown, command: 'trustfix.accept', arguments: [id] },
        data: { suggestionId: id, probability },
    };
}

const relative = (uri: string): string => uri.replace('file:///ws/', '');

describe('suggestionIdOf', () => {
    it('reads the id from the trustfix.accept command of a code action or a bare command', () => {
        assert.equal(suggestionIdOf(action('s1', 'x')), 's1');
        assert.equal(suggestionIdOf({ title: 't', command: 'trustfix.accept', arguments: ['s2'] }), 's2');
        assert.equal(suggestionIdOf({ title: 'Organize imports', command: { title: 't', command: 'python.sort' } }), undefined);
        assert.equal(suggestionIdOf({ title: 'trustfix: x', command: { title: 't', command: 'trustfix.accept', arguments: [7] } }), undefined);
        assert.equal(suggestionIdOf({ title: 'no command' }), undefined);
    });
});

describe('SuggestionRecorder', () => {
    it('records only trustfix actions, most recent first', () => {
        const recorder = new SuggestionRecorder();
        const other = { title: 'Extract method' };
        assert.equal(recorder.recordOffered([action('a', 'A', 0.5), other, action('b', 'B', 0.3)], 'file:///ws/m.py', 1000), 2);
        assert.equal(recorder.recordOffered([action('c', 'C')], 'file:///ws/n.py', 2000), 1);
        assert.deepEqual(
            recorder.recent().map((s) => s.id),
            ['c', 'b', 'a'],
        );
        const b = recorder.get('b');
        assert.equal(b?.title, 'B');
        assert.equal(b.probability, 0.3);
        assert.equal(b.uri, 'file:///ws/m.py');
        assert.equal(b.state, 'offered');
    });

    it('a re-offered suggestion moves to the front and keeps its state', () => {
        const recorder = new SuggestionRecorder();
        recorder.recordOffered([action('a', 'A'), action('b', 'B')], 'u', 1);
        recorder.markAccepted('a');
        recorder.markRated('a', 4);
        recorder.recordOffered([action('a', 'A', 0.9)], 'u', 5);
        const [first] = recorder.recent();
        assert.equal(first?.id, 'a');
        assert.equal(first.state, 'accepted');
        assert.equal(first.rating, 4);
        assert.equal(first.offeredAt, 5);
        assert.equal(first.probability, 0.9);
    });

    it('keeps at most `capacity` suggestions, dropping the oldest', () => {
        const recorder = new SuggestionRecorder(3);
        for (let i = 0; i < 5; i++) {
            recorder.recordOffered([action(`s${String(i)}`, 'x')], 'u', i);
        }
        assert.deepEqual(
            recorder.recent().map((s) => s.id),
            ['s4', 's3', 's2'],
        );
    });

    it('marks state changes only on known suggestions', () => {
        const recorder = new SuggestionRecorder();
        recorder.recordOffered([action('a', 'A')], 'u', 1);
        recorder.markRejected('a');
        recorder.markCommented('a');
        recorder.markAccepted('unknown');
        assert.equal(recorder.get('a')?.state, 'rejected');
        assert.equal(recorder.get('a')?.commented, true);
        assert.equal(recorder.lastAccepted(), undefined);
    });
});

describe('suggestionPickItems', () => {
    it('lists most recent first and highlights the last accepted one', () => {
        const recorder = new SuggestionRecorder();
        recorder.recordOffered([action('a', 'Use enumerate', 0.42)], 'file:///ws/pkg/m.py', 0);
        recorder.recordOffered([action('b', 'Swap args')], 'file:///ws/n.py', 50_000);
        recorder.recordOffered([action('c', 'Negate')], 'file:///ws/n.py', 60_000);
        recorder.markAccepted('a');
        recorder.markRated('a', 5);
        const { items, activeIndex } = suggestionPickItems(recorder, 62_000, relative);
        assert.deepEqual(
            items.map((item) => item.suggestionId),
            ['c', 'b', 'a'],
        );
        assert.equal(activeIndex, 2);
        assert.deepEqual(items[2], {
            label: 'Use enumerate',
            description: 'p=0.42 · pkg/m.py · 1 min ago',
            detail: 'accepted, rated 5',
            suggestionId: 'a',
        });
        assert.equal(items[0]?.description, 'n.py · just now');
    });

    it('highlights the most recent one when nothing was accepted', () => {
        const recorder = new SuggestionRecorder();
        recorder.recordOffered([action('a', 'A'), action('b', 'B')], 'u', 0);
        assert.equal(suggestionPickItems(recorder, 0, relative).activeIndex, 0);
    });
});

describe('formatAge', () => {
    it('rounds down to the largest unit', () => {
        assert.deepEqual(
            [0, 4_999, 42_000, 300_000, 7_200_000, 200_000_000].map(formatAge),
            ['just now', 'just now', '42 s ago', '5 min ago', '2 h ago', '2 d ago'],
        );
    });
});

describe('recordingMiddleware', () => {
    it('records the code actions the server offers and passes them on unchanged', async () => {
        const recorder = new SuggestionRecorder();
        const middleware = recordingMiddleware(recorder, () => 123);
        const offered = [action('a', 'A', 0.7)];
        const document = { uri: { toString: () => 'file:///ws/m.py' } };
        const provide = middleware.provideCodeActions;
        assert.ok(provide);
        const result = await provide(document as never, {} as never, {} as never, {} as never, () => Promise.resolve(offered as never));
        assert.equal(result, offered);
        assert.equal(recorder.get('a')?.offeredAt, 123);
        assert.equal(recorder.get('a')?.uri, 'file:///ws/m.py');
    });

    it('marks a suggestion accepted when trustfix.accept runs, and still runs it', async () => {
        const recorder = new SuggestionRecorder();
        recorder.recordOffered([action('a', 'A')], 'u', 0);
        const middleware = recordingMiddleware(recorder, () => 0);
        const execute = middleware.executeCommand;
        assert.ok(execute);
        const calls: unknown[] = [];
        const next = (command: string, args: unknown[]) => {
            calls.push([command, args]);
            return Promise.resolve('done');
        };
        assert.equal(await execute('trustfix.accept', ['a'], next), 'done');
        assert.equal(await execute('trustfix.rate', ['a', 2], next), 'done');
        assert.deepEqual(calls, [
            ['trustfix.accept', ['a']],
            ['trustfix.rate', ['a', 2]],
        ]);
        assert.equal(recorder.lastAccepted()?.id, 'a');
    });
});
