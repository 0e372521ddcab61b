/** Creates the vscode-languageclient LanguageClient for one run of `<python> -m trustfix serve`. */
import {
    CloseAction,
    ErrorAction,
    ExecuteCommandRequest,
    LanguageClient,
    RevealOutputChannelOn,
    type LanguageClientOptions,
    type ServerOptions,
} from 'vscode-languageclient/node';
import { serverCommand, type ResolvedInterpreter } from './interpreter';
import { STATUS_NOTIFICATION, parseStatusParams } from './protocol';
import { SECTION, toInitializationOptions, type TrustfixSettings } from './settings';
import { recordingMiddleware, type SuggestionRecorder } from './suggestions';
import type { ServerHandle, ServerHooks } from './supervisor';
import type { LogOutputChannel, WorkspaceFolder } from './vscodeapi';

const STOP_TIMEOUT_MS = 2000;

export interface ClientContext {
    settings: TrustfixSettings;
    outputChannel: LogOutputChannel;
    recorder: SuggestionRecorder;
    workspaceFolder: WorkspaceFolder | undefined;
    now: () => number;
}

/** How the server process is spawned: stdio, unbuffered, in the workspace folder. */
export function serverOptions(interpreter: ResolvedInterpreter, cwd: string | undefined): ServerOptions {
    const { command, args } = serverCommand(interpreter.command);
    return { command, args, options: { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } } };
}

export function createServerHandle(
    interpreter: ResolvedInterpreter,
    hooks: ServerHooks,
    context: ClientContext,
): ServerHandle {
    const clientOptions: LanguageClientOptions = {
        documentSelector: [
            { scheme: 'file', language: 'python' },
            { scheme: 'untitled', language: 'python' },
        ],
        workspaceFolder: context.workspaceFolder,
        outputChannel: context.outputChannel,
        traceOutputChannel: context.outputChannel,
        revealOutputChannelOn: RevealOutputChannelOn.Never,
        initializationOptions: toInitializationOptions(context.settings),
        synchronize: { configurationSection: SECTION },
        errorHandler: {
            error: () => ({ action: ErrorAction.Continue }),
            closed: () => {
                hooks.onUnexpectedExit();
                return { action: CloseAction.DoNotRestart, handled: true };
            },
        },
        middleware: recordingMiddleware(context.recorder, context.now),
    };
    const client = new LanguageClient(
        SECTION,
        'trustfix',
        serverOptions(interpreter, context.workspaceFolder?.uri.fsPath),
        clientOptions,
    );
    client.onNotification(STATUS_NOTIFICATION, (params: unknown) => {
        const status = parseStatusParams(params);
        if (status === undefined) {
            context.outputChannel.warn(`ignored a malformed ${STATUS_NOTIFICATION}: ${JSON.stringify(params)}`);
        } else {
            hooks.onStatus(status);
        }
    });
    return {
        start: () => client.start(),
        stop: async () => {
            try {
                await client.dispose(STOP_TIMEOUT_MS);
            } catch (error) {
                context.outputChannel.warn(`stopping the server: ${String(error)}`);
            }
        },
        sendCommand: (command, args) => client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args }),
    };
}
