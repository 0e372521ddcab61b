/**
 * The seam between trustfix and the VS Code API: every call into `vscode` goes through here,
 * so that unit tests can replace the `vscode` module and watch what the extension does.
 */
import * as vscode from 'vscode';

export type {
    CodeAction,
    Command,
    ConfigurationChangeEvent,
    Disposable,
    LogOutputChannel,
    QuickPickItem,
    StatusBarItem,
    TextEditor,
    Uri,
    WorkspaceConfiguration,
    WorkspaceEdit,
    WorkspaceFolder,
} from 'vscode';

export function getConfiguration(section: string, scope?: vscode.ConfigurationScope): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(section, scope);
}

export function onDidChangeConfiguration(
    listener: (event: vscode.ConfigurationChangeEvent) => unknown,
): vscode.Disposable {
    return vscode.workspace.onDidChangeConfiguration(listener);
}

export function getWorkspaceFolders(): readonly vscode.WorkspaceFolder[] {
    return vscode.workspace.workspaceFolders ?? [];
}

/** The workspace-relative path of a URI given as a string (as the suggestion recorder keeps it). */
export function relativePathOfUri(uri: string): string {
    return vscode.workspace.asRelativePath(vscode.Uri.parse(uri), false);
}

export function applyWorkspaceEdit(edit: vscode.WorkspaceEdit): Thenable<boolean> {
    return vscode.workspace.applyEdit(edit);
}

export function registerCommand(id: string, callback: (...args: unknown[]) => unknown): vscode.Disposable {
    return vscode.commands.registerCommand(id, callback);
}

export function executeCommand<T = unknown>(id: string, ...args: unknown[]): Thenable<T> {
    return vscode.commands.executeCommand<T>(id, ...args);
}

export function createOutputChannel(name: string): vscode.LogOutputChannel {
    return vscode.window.createOutputChannel(name, { log: true });
}

export function createStatusBarItem(id: string, priority: number): vscode.StatusBarItem {
    return vscode.window.createStatusBarItem(id, vscode.StatusBarAlignment.Right, priority);
}

export function themeColor(id: string): vscode.ThemeColor {
    return new vscode.ThemeColor(id);
}

export function showErrorMessage(message: string, ...actions: string[]): Thenable<string | undefined> {
    return vscode.window.showErrorMessage(message, ...actions);
}

export function showWarningMessage(message: string, ...actions: string[]): Thenable<string | undefined> {
    return vscode.window.showWarningMessage(message, ...actions);
}

export function showInformationMessage(message: string, ...actions: string[]): Thenable<string | undefined> {
    return vscode.window.showInformationMessage(message, ...actions);
}

export function setStatusBarMessage(text: string, hideAfterMs: number): vscode.Disposable {
    return vscode.window.setStatusBarMessage(text, hideAfterMs);
}

export function showQuickPick<T extends vscode.QuickPickItem>(
    items: readonly T[],
    options: vscode.QuickPickOptions,
): Thenable<T | undefined> {
    return vscode.window.showQuickPick(items, options);
}

/** A single-choice quick pick whose highlighted item is `items[activeIndex]` when it opens. */
export function pickWithActive<T extends vscode.QuickPickItem>(
    items: readonly T[],
    activeIndex: number,
    placeholder: string,
): Promise<T | undefined> {
    return new Promise<T | undefined>((resolve) => {
        const pick = vscode.window.createQuickPick<T>();
        pick.placeholder = placeholder;
        pick.matchOnDescription = true;
        pick.items = items;
        const active = items[activeIndex];
        if (active !== undefined) {
            pick.activeItems = [active];
        }
        let chosen: T | undefined;
        pick.onDidAccept(() => {
            chosen = pick.selectedItems[0] ?? pick.activeItems[0];
            pick.hide();
        });
        pick.onDidHide(() => {
            pick.dispose();
            resolve(chosen);
        });
        pick.show();
    });
}

export function showInputBox(options: vscode.InputBoxOptions): Thenable<string | undefined> {
    return vscode.window.showInputBox(options);
}

export function getActiveTextEditor(): vscode.TextEditor | undefined {
    return vscode.window.activeTextEditor;
}

export function writeClipboard(text: string): Thenable<void> {
    return vscode.env.clipboard.writeText(text);
}

export function openSettings(query: string): Thenable<unknown> {
    return vscode.commands.executeCommand('workbench.action.openSettings', query);
}

/** The exported API of an installed extension, activating it first; undefined when it is absent. */
export async function getExtensionApi(id: string): Promise<unknown> {
    const extension = vscode.extensions.getExtension<unknown>(id);
    if (extension === undefined) {
        return undefined;
    }
    return extension.isActive ? extension.exports : await extension.activate();
}
