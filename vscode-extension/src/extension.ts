/** Entry point: wires settings, the server supervisor, the status bar and the commands together. */
import { RestartBackoff, realTimers, type Timers } from './backoff';
import { createServerHandle } from './client';
import { registerCommands } from './commands';
import { checkInstalled, getPythonExtensionApi, resolveInterpreter, type InstallCheck } from './interpreter';
import { SECTION, getSettings, primaryWorkspaceFolder } from './settings';
import { TrustfixStatusBar } from './statusbar';
import { SuggestionRecorder } from './suggestions';
import { ServerSupervisor, type ServerHandle, type ServerHooks } from './supervisor';
import * as vscodeapi from './vscodeapi';
import type { ResolvedInterpreter } from './interpreter';

/** What `activate` needs besides VS Code; tests replace the parts that would start a server. */
export interface ActivationDeps {
    timers: Timers;
    checkInstalled(interpreter: readonly string[], cwd?: string): Promise<InstallCheck>;
    createServer(
        interpreter: ResolvedInterpreter,
        hooks: ServerHooks,
        context: Parameters<typeof createServerHandle>[2],
    ): ServerHandle;
}

const defaultDeps: ActivationDeps = { timers: realTimers, checkInstalled, createServer: createServerHandle };

let supervisor: ServerSupervisor | undefined;

/** The part of vscode.ExtensionContext that trustfix uses. */
export interface ActivationContext {
    subscriptions: { dispose(): unknown }[];
}

export async function activate(
    context: ActivationContext,
    deps: ActivationDeps = defaultDeps,
): Promise<ServerSupervisor> {
    const output = vscodeapi.createOutputChannel('trustfix');
    const statusBar = new TrustfixStatusBar();
    const recorder = new SuggestionRecorder();
    const now = (): number => deps.timers.now();
    let usesPythonExtension = false;

    const running = new ServerSupervisor({
        resolveInterpreter: async () => {
            const configured = getSettings().interpreter;
            const pythonApi = configured.length > 0 ? undefined : await getPythonExtensionApi();
            const resolved = await resolveInterpreter(configured, pythonApi, primaryWorkspaceFolder()?.uri);
            usesPythonExtension = resolved.source === 'pythonExtension';
            return resolved;
        },
        checkInstalled: (interpreter) => deps.checkInstalled(interpreter, primaryWorkspaceFolder()?.uri.fsPath),
        createServer: (interpreter, hooks) =>
            deps.createServer(interpreter, hooks, {
                settings: getSettings(),
                outputChannel: output,
                recorder,
                workspaceFolder: primaryWorkspaceFolder(),
                now,
            }),
        timers: deps.timers,
        backoff: new RestartBackoff(now),
        statusBar,
        ui: {
            showError: vscodeapi.showErrorMessage,
            copyToClipboard: vscodeapi.writeClipboard,
            openSettings: vscodeapi.openSettings,
            showOutput: () => {
                output.show(true);
            },
        },
        log: output,
    });
    supervisor = running;

    context.subscriptions.push(
        output,
        statusBar,
        ...registerCommands({ supervisor: running, recorder, statusBar, now }),
        vscodeapi.onDidChangeConfiguration((event) => {
            // Other trustfix.* changes reach the running server as workspace/didChangeConfiguration.
            if (event.affectsConfiguration(`${SECTION}.interpreter`)) {
                void running.restart('trustfix.interpreter changed');
            }
        }),
    );
    const pythonApi = await getPythonExtensionApi();
    if (pythonApi !== undefined) {
        context.subscriptions.push(
            pythonApi.environments.onDidChangeActiveEnvironmentPath(() => {
                if (usesPythonExtension) {
                    void running.restart("the Python extension's active environment changed");
                }
            }),
        );
    }
    await running.start();
    return running;
}

export async function deactivate(): Promise<void> {
    await supervisor?.dispose();
    supervisor = undefined;
}
