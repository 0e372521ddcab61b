/**
 * Keeps one language server running: checks that trustfix is installed in the interpreter,
 * starts the server, restarts it with backoff when it crashes, and gives up after too many
 * quick crashes. The language client itself is created by `createServer` (see client.ts).
 */
import { RestartTimer, type RestartBackoff, type Timers } from './backoff';
import { commandLine, installCommand, type InstallCheck, type ResolvedInterpreter } from './interpreter';
import type { StatusParams } from './protocol';
import { notInstalledView, restartingView, startingView, stoppedView, type StatusView } from './statusbar';

/** One started (or starting) language server. */
export interface ServerHandle {
    start(): Promise<void>;
    /** Stops the server and releases the client; never rejects. */
    stop(): Promise<void>;
    sendCommand(command: string, args: unknown[]): Promise<unknown>;
}

/** What the language client reports back to the supervisor. */
export interface ServerHooks {
    /** The connection closed without the supervisor asking for it: a crash. */
    onUnexpectedExit(): void;
    onStatus(status: StatusParams): void;
}

export interface StatusSink {
    show(view: StatusView): void;
    update(status: StatusParams): void;
    running(): void;
}

export interface SupervisorUi {
    showError(message: string, ...actions: string[]): Thenable<string | undefined>;
    copyToClipboard(text: string): Thenable<void>;
    openSettings(query: string): Thenable<unknown>;
    showOutput(): void;
}

export interface Logger {
    info(message: string): void;
    warn(message: string): void;
    error(message: string): void;
}

export interface SupervisorDeps {
    resolveInterpreter(): Promise<ResolvedInterpreter>;
    checkInstalled(interpreter: readonly string[]): Promise<InstallCheck>;
    createServer(interpreter: ResolvedInterpreter, hooks: ServerHooks): ServerHandle;
    timers: Timers;
    backoff: RestartBackoff;
    statusBar: StatusSink;
    ui: SupervisorUi;
    log: Logger;
}

export type SupervisorState = 'stopped' | 'starting' | 'running' | 'restartPending' | 'notInstalled' | 'gaveUp';

export const Actions = {
    copyInstall: 'Copy install command',
    selectInterpreter: 'Select interpreter',
    retry: 'Retry',
    showOutput: 'Show output',
    restart: 'Restart',
} as const;

export class ServerNotRunningError extends Error {
    constructor() {
        super('the trustfix language server is not running');
        this.name = 'ServerNotRunningError';
    }
}

const SOURCE_TEXT: Record<ResolvedInterpreter['source'], string> = {
    setting: 'trustfix.interpreter',
    pythonExtension: "the Python extension's active environment",
    default: 'the default interpreter',
};

/** The error message shown when the server cannot be started from `interpreter`. */
export function notInstalledMessage(interpreter: ResolvedInterpreter, check: InstallCheck): string {
    const where = `${commandLine(interpreter.command)} (${SOURCE_TEXT[interpreter.source]})`;
    if (check.kind === 'interpreterNotFound') {
        return `trustfix: cannot run the Python interpreter ${where}: not found. Set trustfix.interpreter to a Python that has trustfix installed.`;
    }
    return `trustfix is not installed in ${where}. Install it with: ${installCommand(interpreter.command)}`;
}

function errorText(error: unknown): string {
    return error instanceof Error ? error.message : String(error);
}

export class ServerSupervisor {
    private current: ServerHandle | undefined;
    private currentState: SupervisorState = 'stopped';
    private queue: Promise<void> = Promise.resolve();
    private disposed = false;
    private readonly timer: RestartTimer;

    constructor(private readonly deps: SupervisorDeps) {
        this.timer = new RestartTimer(deps.timers);
    }

    get state(): SupervisorState {
        return this.currentState;
    }

    /** Starts the server (after the install check). */
    start(): Promise<void> {
        return this.enqueue(() => this.startNow());
    }

    /** Stops the server if it runs and starts it afresh, forgetting past crashes. */
    restart(reason: string): Promise<void> {
        return this.enqueue(async () => {
            this.deps.log.info(`restarting the server: ${reason}`);
            this.timer.cancel();
            this.deps.backoff.reset();
            await this.stopCurrent();
            await this.startNow();
        });
    }

    stop(): Promise<void> {
        return this.enqueue(async () => {
            this.timer.cancel();
            await this.stopCurrent();
            this.currentState = 'stopped';
        });
    }

    /** Stops for good (extension deactivation). */
    dispose(): Promise<void> {
        this.disposed = true;
        return this.stop();
    }

    /** Sends workspace/executeCommand to the running server. */
    sendCommand(command: string, args: unknown[]): Promise<unknown> {
        if (this.current === undefined || this.currentState !== 'running') {
            return Promise.reject(new ServerNotRunningError());
        }
        return this.current.sendCommand(command, args);
    }

    private enqueue(operation: () => Promise<void>): Promise<void> {
        this.queue = this.queue.then(operation).catch((error: unknown) => {
            this.deps.log.error(`trustfix: ${errorText(error)}`);
        });
        return this.queue;
    }

    private async stopCurrent(): Promise<void> {
        const handle = this.current;
        this.current = undefined;
        if (handle !== undefined) {
            await handle.stop();
        }
    }

    private async startNow(): Promise<void> {
        if (this.disposed) {
            return;
        }
        this.currentState = 'starting';
        this.deps.statusBar.show(startingView);
        const interpreter = await this.deps.resolveInterpreter();
        this.deps.log.info(
            `interpreter: ${commandLine(interpreter.command)} (from ${SOURCE_TEXT[interpreter.source]})`,
        );
        const check = await this.deps.checkInstalled(interpreter.command);
        if (check.kind !== 'installed') {
            this.currentState = 'notInstalled';
            this.deps.statusBar.show(notInstalledView);
            const message = notInstalledMessage(interpreter, check);
            this.deps.log.error(`${message} (${check.detail})`);
            void this.offerInstallHelp(interpreter, check, message);
            return;
        }
        const hooks: ServerHooks = {
            onUnexpectedExit: () => {
                this.crashed(handle);
            },
            onStatus: (status) => {
                if (this.current === handle) {
                    this.deps.statusBar.update(status);
                }
            },
        };
        const handle = this.deps.createServer(interpreter, hooks);
        this.current = handle;
        this.deps.backoff.started();
        try {
            await handle.start();
        } catch (error) {
            this.deps.log.error(`the server failed to start: ${errorText(error)}`);
            this.crashed(handle);
            return;
        }
        if (this.current === handle) {
            this.currentState = 'running';
            this.deps.statusBar.running();
        }
    }

    private crashed(handle: ServerHandle): void {
        if (this.current !== handle) {
            return;
        }
        this.current = undefined;
        void handle.stop();
        const decision = this.deps.backoff.crashed();
        if (decision.kind === 'restart') {
            this.currentState = 'restartPending';
            this.deps.statusBar.show(restartingView(decision.delayMs));
            this.deps.log.warn(
                `the server stopped unexpectedly; restart ${String(decision.attempt)} in ${String(decision.delayMs)} ms`,
            );
            this.timer.schedule(decision.delayMs, () => {
                void this.enqueue(() => this.startNow());
            });
            return;
        }
        this.currentState = 'gaveUp';
        this.deps.statusBar.show(stoppedView);
        const message = `trustfix: the language server crashed ${String(decision.crashes)} times in a row and is not restarted again. See the trustfix output for its log.`;
        this.deps.log.error(message);
        void this.deps.ui.showError(message, Actions.showOutput, Actions.restart).then((choice) => {
            if (choice === Actions.showOutput) {
                this.deps.ui.showOutput();
            } else if (choice === Actions.restart) {
                void this.restart('requested after the server gave up');
            }
        });
    }

    private async offerInstallHelp(
        interpreter: ResolvedInterpreter,
        check: InstallCheck,
        message: string,
    ): Promise<void> {
        const actions: string[] =
            check.kind === 'interpreterNotFound'
                ? [Actions.selectInterpreter, Actions.retry]
                : [Actions.copyInstall, Actions.selectInterpreter, Actions.retry];
        const choice = await this.deps.ui.showError(message, ...actions);
        if (choice === Actions.copyInstall) {
            await this.deps.ui.copyToClipboard(installCommand(interpreter.command));
        } else if (choice === Actions.selectInterpreter) {
            await this.deps.ui.openSettings('trustfix.interpreter');
        } else if (choice === Actions.retry) {
            await this.restart('retry after the install check failed');
        }
    }
}
