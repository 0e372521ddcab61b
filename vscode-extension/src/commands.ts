/** The extension's own commands: Refine here, Reject / Comment / Rate, Show trust, Restart. */
import {
    ClientCommands,
    REFINE_KIND,
    ServerCommands,
    actionProbability,
    actionTitle,
    commentArguments,
    formatTrustMessage,
    parseTrustReply,
    rateArguments,
    rejectArguments,
    type StatusParams,
} from './protocol';
import { suggestionIdOf, suggestionPickItems, type SuggestionRecorder } from './suggestions';
import { ServerNotRunningError } from './supervisor';
import * as vscodeapi from './vscodeapi';

/** How many code actions `vscode.executeCodeActionProvider` resolves (their edits filled in). */
const RESOLVE_COUNT = 20;
const CONFIRMATION_MS = 4000;

export interface CommandDeps {
    supervisor: {
        sendCommand(command: string, args: unknown[]): Promise<unknown>;
        restart(reason: string): Promise<void>;
    };
    recorder: SuggestionRecorder;
    statusBar: { update(status: StatusParams): void };
    now: () => number;
}

export const Messages = {
    noEditor: 'trustfix: open a Python file and put the cursor inside a function first.',
    noRefinements: 'trustfix: no refinements for the code at the cursor.',
    noSuggestions: 'trustfix: no suggestions yet. Put the cursor in a Python function and run "trustfix: Refine here".',
    notRunning: 'trustfix: the language server is not running.',
    restart: 'Restart server',
} as const;

export interface ScoreItem extends vscodeapi.QuickPickItem {
    score: number;
}

export const SCORE_ITEMS: readonly ScoreItem[] = [
    { label: '1', description: 'wrong: it breaks the code', score: 1 },
    { label: '2', description: 'poor: more wrong than right', score: 2 },
    { label: '3', description: 'neutral', score: 3 },
    { label: '4', description: 'good: I would take it', score: 4 },
    { label: '5', description: 'excellent: exactly right', score: 5 },
];

type ActionLike = vscodeapi.CodeAction | vscodeapi.Command;

interface RefinementItem extends vscodeapi.QuickPickItem {
    action: ActionLike;
}

function errorText(error: unknown): string {
    return error instanceof Error ? error.message : String(error);
}

function titleOf(deps: CommandDeps, id: string): string {
    return deps.recorder.get(id)?.title ?? id;
}

/** Sends a server command; on failure tells the user why and returns undefined. */
async function send(
    deps: CommandDeps,
    command: string,
    args: unknown[],
    done?: string,
): Promise<{ reply: unknown } | undefined> {
    try {
        const reply = await deps.supervisor.sendCommand(command, args);
        if (done !== undefined) {
            vscodeapi.setStatusBarMessage(`$(check) trustfix: ${done}`, CONFIRMATION_MS);
        }
        return { reply };
    } catch (error) {
        if (error instanceof ServerNotRunningError) {
            const choice = await vscodeapi.showWarningMessage(Messages.notRunning, Messages.restart);
            if (choice === Messages.restart) {
                await deps.supervisor.restart('requested by the user');
            }
        } else {
            await vscodeapi.showErrorMessage(`trustfix: ${command} failed: ${errorText(error)}`);
        }
        return undefined;
    }
}

/** Applies a code action as VS Code does: its edit first, then its command. */
export async function applyAction(action: ActionLike): Promise<void> {
    if (typeof action.command === 'string') {
        const command = action as vscodeapi.Command;
        const args: unknown[] = command.arguments ?? [];
        await vscodeapi.executeCommand(command.command, ...args);
        return;
    }
    const codeAction = action as vscodeapi.CodeAction;
    if (codeAction.edit !== undefined && !(await vscodeapi.applyWorkspaceEdit(codeAction.edit))) {
        await vscodeapi.showErrorMessage(`trustfix: could not apply "${codeAction.title}".`);
        return;
    }
    if (codeAction.command !== undefined) {
        const args: unknown[] = codeAction.command.arguments ?? [];
        await vscodeapi.executeCommand(codeAction.command.command, ...args);
    }
}

/** Asks the server for refinements at the cursor and applies the one the user picks. */
export async function refineHere(): Promise<void> {
    const editor = vscodeapi.getActiveTextEditor();
    if (editor === undefined) {
        await vscodeapi.showInformationMessage(Messages.noEditor);
        return;
    }
    const actions = await vscodeapi.executeCommand<ActionLike[] | undefined>(
        'vscode.executeCodeActionProvider',
        editor.document.uri,
        editor.selection,
        REFINE_KIND,
        RESOLVE_COUNT,
    );
    const items: RefinementItem[] = (actions ?? [])
        .filter((action) => suggestionIdOf(action) !== undefined)
        .map((action) => {
            const probability = actionProbability(action);
            return {
                label: actionTitle(action.title),
                description: probability === undefined ? '' : `p=${probability.toFixed(2)}`,
                action,
            };
        });
    if (items.length === 0) {
        await vscodeapi.showInformationMessage(Messages.noRefinements);
        return;
    }
    const chosen = await vscodeapi.showQuickPick(items, {
        placeHolder: 'trustfix refinements, most likely first',
        matchOnDescription: true,
    });
    if (chosen !== undefined) {
        await applyAction(chosen.action);
    }
}

/** The suggestion to act on: the one given as argument, else the user's pick of the recent ones. */
export async function pickSuggestion(deps: CommandDeps, given: unknown, placeholder: string): Promise<string | undefined> {
    if (typeof given === 'string' && given !== '') {
        return given;
    }
    const { items, activeIndex } = suggestionPickItems(deps.recorder, deps.now(), vscodeapi.relativePathOfUri);
    if (items.length === 0) {
        await vscodeapi.showInformationMessage(Messages.noSuggestions);
        return undefined;
    }
    const chosen = await vscodeapi.pickWithActive(items, activeIndex, placeholder);
    return chosen?.suggestionId;
}

export async function rejectSuggestion(deps: CommandDeps, given?: unknown): Promise<void> {
    const id = await pickSuggestion(deps, given, 'Reject which trustfix suggestion?');
    if (id === undefined) {
        return;
    }
    if ((await send(deps, ServerCommands.reject, rejectArguments(id), `rejected "${titleOf(deps, id)}"`)) !== undefined) {
        deps.recorder.markRejected(id);
    }
}

export async function rateSuggestion(deps: CommandDeps, given?: unknown, givenScore?: unknown): Promise<void> {
    const id = await pickSuggestion(deps, given, 'Rate which trustfix suggestion?');
    if (id === undefined) {
        return;
    }
    let score: number | undefined = typeof givenScore === 'number' ? givenScore : undefined;
    if (score === undefined) {
        const chosen = await vscodeapi.showQuickPick(SCORE_ITEMS, {
            placeHolder: `Rate "${titleOf(deps, id)}" from 1 (wrong) to 5 (excellent)`,
        });
        score = chosen?.score;
    }
    if (score === undefined) {
        return;
    }
    const args = rateArguments(id, score);
    if ((await send(deps, ServerCommands.rate, args, `rated "${titleOf(deps, id)}" ${String(score)}/5`)) !== undefined) {
        deps.recorder.markRated(id, score);
    }
}

/** The input box's validation: undefined when the comment can be sent, else why not. */
export function validateComment(text: string): string | undefined {
    try {
        commentArguments('-', text);
        return undefined;
    } catch (error) {
        return errorText(error);
    }
}

export async function commentOnSuggestion(deps: CommandDeps, given?: unknown, givenText?: unknown): Promise<void> {
    const id = await pickSuggestion(deps, given, 'Comment on which trustfix suggestion?');
    if (id === undefined) {
        return;
    }
    const text =
        typeof givenText === 'string'
            ? givenText
            : await vscodeapi.showInputBox({
                  title: `Comment on "${titleOf(deps, id)}"`,
                  prompt: 'What is right or wrong with this refinement? A corrected line of code helps too.',
                  ignoreFocusOut: true,
                  validateInput: validateComment,
              });
    if (text === undefined) {
        return;
    }
    const args = commentArguments(id, text);
    if ((await send(deps, ServerCommands.comment, args, `commented on "${titleOf(deps, id)}"`)) !== undefined) {
        deps.recorder.markCommented(id);
    }
}

/** Asks the server for the reviewer's trust and shows it (and refreshes the status bar). */
export async function showTrust(deps: CommandDeps): Promise<void> {
    const sent = await send(deps, ServerCommands.trust, []);
    if (sent === undefined) {
        return;
    }
    let reply;
    try {
        reply = parseTrustReply(sent.reply);
    } catch (error) {
        await vscodeapi.showErrorMessage(`trustfix: ${errorText(error)}`);
        return;
    }
    deps.statusBar.update({ policyVersion: reply.policyVersion, trust: reply.trust, reviewer: reply.reviewer });
    await vscodeapi.showInformationMessage(formatTrustMessage(reply));
}

export function registerCommands(deps: CommandDeps): vscodeapi.Disposable[] {
    return [
        vscodeapi.registerCommand(ClientCommands.refineHere, () => refineHere()),
        vscodeapi.registerCommand(ClientCommands.rejectSuggestion, (id) => rejectSuggestion(deps, id)),
        vscodeapi.registerCommand(ClientCommands.rateSuggestion, (id, score) => rateSuggestion(deps, id, score)),
        vscodeapi.registerCommand(ClientCommands.commentOnSuggestion, (id, text) => commentOnSuggestion(deps, id, text)),
        vscodeapi.registerCommand(ClientCommands.showTrust, () => showTrust(deps)),
        vscodeapi.registerCommand(ClientCommands.restartServer, () => deps.supervisor.restart('requested by the user')),
    ];
}
