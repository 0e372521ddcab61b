import { fake, resetFake } from './vscode-mock';
import * as assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import {
    TrustfixStatusBar,
    notInstalledView,
    restartingView,
    statusText,
    stoppedView,
} from '../../vscode-extension/src/statusbar';

describe('statusText', () => {
    it('shows policy version and trust', () => {
        assert.equal(statusText({ policyVersion: 12, trust: 0.8234, reviewer: 'r' }), '$(shield) trustfix v12 · trust 0.82');
    });

    it('leaves the version out until one is published and shows – for unknown trust', () => {
        assert.equal(statusText({ policyVersion: null, trust: null, reviewer: 'r' }), '$(shield) trustfix · trust –');
        assert.equal(statusText({ policyVersion: 0, trust: 1, reviewer: 'r' }), '$(shield) trustfix v0 · trust 1.00');
    });
});

describe('TrustfixStatusBar', () => {
    beforeEach(resetFake);

    it('creates one visible item on the right that says starting', () => {
        const bar = new TrustfixStatusBar();
        assert.equal(fake.statusBarItems.length, 1);
        const [item] = fake.statusBarItems;
        assert.equal(item?.alignment, 2);
        assert.equal(item.visible, true);
        assert.equal(item.text, '$(loading~spin) trustfix: starting…');
        bar.dispose();
        assert.equal(item.disposed, true);
    });

    it('follows the status the server reports; clicking shows trust', () => {
        const bar = new TrustfixStatusBar();
        const [item] = fake.statusBarItems;
        bar.update({ policyVersion: 3, trust: 0.5, reviewer: 'ada' });
        assert.equal(item?.text, '$(shield) trustfix v3 · trust 0.50');
        assert.equal(item.command, 'trustfix.showTrust');
        assert.match(item.tooltip ?? '', /Reviewer: ada/);
        assert.equal(item.backgroundColor, undefined);
        bar.update({ policyVersion: 4, trust: 0.61, reviewer: 'ada' });
        assert.equal(item.text, '$(shield) trustfix v4 · trust 0.61');
        assert.deepEqual(bar.lastStatus, { policyVersion: 4, trust: 0.61, reviewer: 'ada' });
    });

    it('shows the error views with the error background and a restart click', () => {
        const bar = new TrustfixStatusBar();
        const [item] = fake.statusBarItems;
        bar.show(notInstalledView);
        assert.equal(item?.text, '$(error) trustfix: not installed');
        assert.equal(item.backgroundColor?.id, 'statusBarItem.errorBackground');
        assert.equal(item.command, 'trustfix.restartServer');
        bar.show(restartingView(4000));
        assert.equal(item.text, '$(warning) trustfix: restarting in 4 s');
        assert.equal(item.backgroundColor, undefined);
        bar.show(stoppedView);
        assert.equal(item.text, '$(error) trustfix: stopped');
    });

    it('running() shows the last known status again after a restart', () => {
        const bar = new TrustfixStatusBar();
        const [item] = fake.statusBarItems;
        bar.running();
        assert.equal(item?.text, '$(shield) trustfix · trust –');
        bar.update({ policyVersion: 9, trust: 0.9, reviewer: '' });
        bar.show(restartingView(1000));
        bar.running();
        assert.equal(item.text, '$(shield) trustfix v9 · trust 0.90');
    });
});
