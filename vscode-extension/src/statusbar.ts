/** The status bar item: policy version and the reviewer's trust, or what the server is doing. */
import { ClientCommands, type StatusParams } from './protocol';
import * as vscodeapi from './vscodeapi';

export const STATUS_BAR_ID = 'trustfix.status';

export interface StatusView {
    text: string;
    tooltip: string;
    command: string;
    error: boolean;
}

export function formatTrust(trust: number | null): string {
    return trust === null ? '–' : trust.toFixed(2);
}

/** `$(shield) trustfix v12 · trust 0.82`; the version is left out until one is published. */
export function statusText(status: StatusParams): string {
    const version = status.policyVersion === null ? '' : ` v${String(status.policyVersion)}`;
    return `$(shield) trustfix${version} · trust ${formatTrust(status.trust)}`;
}

export function runningView(status: StatusParams): StatusView {
    const lines = [
        `Reviewer: ${status.reviewer === '' ? '(server default)' : status.reviewer}`,
        `Trust: ${formatTrust(status.trust)} — how much trustfix relies on your feedback`,
        `Policy version: ${status.policyVersion === null ? 'none yet' : String(status.policyVersion)}`,
        'Click for details.',
    ];
    return { text: statusText(status), tooltip: lines.join('\n'), command: ClientCommands.showTrust, error: false };
}

export const startingView: StatusView = {
    text: '$(loading~spin) trustfix: starting…',
    tooltip: 'The trustfix language server is starting.',
    command: ClientCommands.restartServer,
    error: false,
};

export const notInstalledView: StatusView = {
    text: '$(error) trustfix: not installed',
    tooltip: 'trustfix is not installed in the configured interpreter. Click to check again.',
    command: ClientCommands.restartServer,
    error: true,
};

export function restartingView(delayMs: number): StatusView {
    const seconds = Math.max(1, Math.round(delayMs / 1000));
    return {
        text: `$(warning) trustfix: restarting in ${String(seconds)} s`,
        tooltip: 'The trustfix language server stopped unexpectedly; see the trustfix output. Click to restart now.',
        command: ClientCommands.restartServer,
        error: false,
    };
}

export const stoppedView: StatusView = {
    text: '$(error) trustfix: stopped',
    tooltip: 'The trustfix language server is not running; see the trustfix output. Click to restart it.',
    command: ClientCommands.restartServer,
    error: true,
};

/** Owns the one status bar item and shows a StatusView on it. */
export class TrustfixStatusBar {
    private readonly item: vscodeapi.StatusBarItem;
    private status: StatusParams | undefined;

    constructor() {
        this.item = vscodeapi.createStatusBarItem(STATUS_BAR_ID, 100);
        this.item.name = 'trustfix';
        this.show(startingView);
        this.item.show();
    }

    /** The last status the server reported, if any. */
    get lastStatus(): StatusParams | undefined {
        return this.status;
    }

    show(view: StatusView): void {
        this.item.text = view.text;
        this.item.tooltip = view.tooltip;
        this.item.command = view.command;
        this.item.backgroundColor = view.error ? vscodeapi.themeColor('statusBarItem.errorBackground') : undefined;
    }

    update(status: StatusParams): void {
        this.status = status;
        this.show(runningView(status));
    }

    /** The server is up but has not reported yet: show the last known status, else a neutral one. */
    running(): void {
        this.show(runningView(this.status ?? { policyVersion: null, trust: null, reviewer: '' }));
    }

    dispose(): void {
        this.item.dispose();
    }
}
