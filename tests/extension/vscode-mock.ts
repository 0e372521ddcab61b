/**
 * A fake `vscode` module: installed on import by intercepting `require('vscode')`, it records what
 * the extension asks of VS Code and answers from the `fake` state that each test sets up.
 */
import { Module } from 'node:module';

type Listener<T> = (event: T) => unknown;
type Callback = (...args: unknown[]) => unknown;

export class FakeUri {
    readonly scheme = 'file';
    constructor(readonly fsPath: string) {}
    get path(): string {
        return this.fsPath;
    }
    toString(): string {
        return `file://${this.fsPath}`;
    }
    static file(path: string): FakeUri {
        return new FakeUri(path);
    }
    static parse(text: string): FakeUri {
        return new FakeUri(text.replace(/^file:\/\//, ''));
    }
}

export interface FakeStatusBarItem {
    id: string;
    alignment: number;
    priority: number;
    name: string | undefined;
    text: string;
    tooltip: string | undefined;
    command: string | undefined;
    backgroundColor: { id: string } | undefined;
    visible: boolean;
    disposed: boolean;
}

export interface FakeQuickPickItem {
    label: string;
}

export interface Message {
    level: 'error' | 'warning' | 'information';
    text: string;
    actions: string[];
}

export interface FakeExtension {
    isActive: boolean;
    exports: unknown;
    activate(): Promise<unknown>;
}

export interface FakeInputBoxOptions {
    title?: string;
    validateInput?: (value: string) => string | undefined;
}

export interface FakeState {
    /** Settings by full key, e.g. `trustfix.topK`. */
    configuration: Map<string, unknown>;
    configurationScopes: unknown[];
    workspaceFolders: { uri: FakeUri; name: string; index: number }[];
    registered: Map<string, Callback>;
    /** Answers for `executeCommand` of ids nobody registered (built-in commands). */
    builtinCommands: Map<string, Callback>;
    executed: { command: string; args: unknown[] }[];
    messages: Message[];
    /** Which action the user clicks on a message; undefined dismisses it. */
    messageChoice: (message: Message) => string | undefined;
    quickPicks: { items: readonly FakeQuickPickItem[]; active: readonly FakeQuickPickItem[]; placeholder: string | undefined }[];
    /** The item the user accepts in a quick pick; the default accepts the highlighted one. */
    quickPickChoice: (items: readonly FakeQuickPickItem[], active: readonly FakeQuickPickItem[]) => FakeQuickPickItem | undefined;
    inputBoxes: FakeInputBoxOptions[];
    inputBoxValue: string | undefined;
    statusBarItems: FakeStatusBarItem[];
    statusBarMessages: string[];
    outputLines: string[];
    clipboard: string;
    extensions: Map<string, FakeExtension>;
    activeTextEditor: unknown;
    configurationListeners: Listener<{ affectsConfiguration(section: string): boolean }>[];
    appliedEdits: unknown[];
}

function freshState(): FakeState {
    return {
        configuration: new Map(),
        configurationScopes: [],
        workspaceFolders: [],
        registered: new Map(),
        builtinCommands: new Map(),
        executed: [],
        messages: [],
        messageChoice: () => undefined,
        quickPicks: [],
        quickPickChoice: (_items, active) => active[0],
        inputBoxes: [],
        inputBoxValue: undefined,
        statusBarItems: [],
        statusBarMessages: [],
        outputLines: [],
        clipboard: '',
        extensions: new Map(),
        activeTextEditor: undefined,
        configurationListeners: [],
        appliedEdits: [],
    };
}

export const fake: FakeState = freshState();

/** Puts the fake back to a blank VS Code window. */
export function resetFake(): void {
    Object.assign(fake, freshState());
}

/** Fires `workspace.onDidChangeConfiguration` for a change of `key`. */
export function changeConfiguration(key: string, value: unknown): void {
    fake.configuration.set(key, value);
    for (const listener of fake.configurationListeners) {
        listener({ affectsConfiguration: (section) => key === section || key.startsWith(`${section}.`) });
    }
}

function disposable(dispose: () => void = () => undefined): { dispose(): void } {
    return { dispose };
}

function message(level: Message['level']) {
    return (text: string, ...actions: string[]): Promise<string | undefined> => {
        const shown: Message = { level, text, actions };
        fake.messages.push(shown);
        return Promise.resolve(fake.messageChoice(shown));
    };
}

function createQuickPick() {
    const accept: (() => void)[] = [];
    const hide: (() => void)[] = [];
    const pick = {
        placeholder: undefined as string | undefined,
        matchOnDescription: false,
        items: [] as readonly FakeQuickPickItem[],
        activeItems: [] as readonly FakeQuickPickItem[],
        selectedItems: [] as readonly FakeQuickPickItem[],
        onDidAccept: (listener: () => void) => (accept.push(listener), disposable()),
        onDidHide: (listener: () => void) => (hide.push(listener), disposable()),
        show: () => {
            fake.quickPicks.push({ items: pick.items, active: pick.activeItems, placeholder: pick.placeholder });
            setImmediate(() => {
                const choice = fake.quickPickChoice(pick.items, pick.activeItems);
                if (choice === undefined) {
                    pick.hide();
                } else {
                    pick.selectedItems = [choice];
                    accept.forEach((listener) => {
                        listener();
                    });
                }
            });
        },
        hide: () => {
            hide.forEach((listener) => {
                listener();
            });
        },
        dispose: () => undefined,
    };
    return pick;
}

/** A stand-in for a VS Code class that vscode-languageclient extends when it loads. */
function fakeClass() {
    return class {
        readonly fake = true;
    };
}

const vscode = {
    Uri: FakeUri,
    StatusBarAlignment: { Left: 1, Right: 2 },
    ThemeColor: class {
        constructor(readonly id: string) {}
    },
    // Classes that vscode-languageclient extends when it loads.
    CompletionItem: fakeClass(),
    CodeLens: fakeClass(),
    DocumentLink: fakeClass(),
    CodeAction: fakeClass(),
    Diagnostic: fakeClass(),
    CallHierarchyItem: fakeClass(),
    TypeHierarchyItem: fakeClass(),
    SymbolInformation: fakeClass(),
    InlayHint: fakeClass(),
    CancellationError: class extends Error {},
    workspace: {
        getConfiguration: (section: string, scope?: unknown) => {
            fake.configurationScopes.push(scope);
            return { get: (key: string): unknown => fake.configuration.get(`${section}.${key}`) };
        },
        onDidChangeConfiguration: (listener: FakeState['configurationListeners'][number]) => {
            fake.configurationListeners.push(listener);
            return disposable();
        },
        get workspaceFolders() {
            return fake.workspaceFolders.length === 0 ? undefined : fake.workspaceFolders;
        },
        asRelativePath: (uri: FakeUri | string): string => {
            const path = typeof uri === 'string' ? uri : uri.fsPath;
            const folder = fake.workspaceFolders.find((candidate) => path.startsWith(`${candidate.uri.fsPath}/`));
            return folder === undefined ? path : path.slice(folder.uri.fsPath.length + 1);
        },
        applyEdit: (edit: unknown): Promise<boolean> => {
            fake.appliedEdits.push(edit);
            return Promise.resolve(true);
        },
    },
    window: {
        createOutputChannel: (name: string) => {
            const log = (level: string) => (text: string) => fake.outputLines.push(`[${level}] ${text}`);
            return {
                name,
                info: log('info'),
                warn: log('warn'),
                error: log('error'),
                show: () => undefined,
                dispose: () => undefined,
            };
        },
        createStatusBarItem: (id: string, alignment: number, priority: number) => {
            const item: FakeStatusBarItem & Record<string, unknown> = {
                id,
                alignment,
                priority,
                name: undefined,
                text: '',
                tooltip: undefined,
                command: undefined,
                backgroundColor: undefined,
                visible: false,
                disposed: false,
                show: () => {
                    item.visible = true;
                },
                dispose: () => {
                    item.disposed = true;
                },
            };
            fake.statusBarItems.push(item);
            return item;
        },
        showErrorMessage: message('error'),
        showWarningMessage: message('warning'),
        showInformationMessage: message('information'),
        setStatusBarMessage: (text: string) => (fake.statusBarMessages.push(text), disposable()),
        showQuickPick: (items: readonly FakeQuickPickItem[], options: { placeHolder?: string }) => {
            fake.quickPicks.push({ items, active: items.slice(0, 1), placeholder: options.placeHolder });
            return Promise.resolve(fake.quickPickChoice(items, items.slice(0, 1)));
        },
        createQuickPick,
        showInputBox: (options: FakeInputBoxOptions) => {
            fake.inputBoxes.push(options);
            return Promise.resolve(fake.inputBoxValue);
        },
        get activeTextEditor() {
            return fake.activeTextEditor;
        },
    },
    commands: {
        registerCommand: (id: string, callback: Callback) => {
            if (fake.registered.has(id)) {
                throw new Error(`command '${id}' already exists`);
            }
            fake.registered.set(id, callback);
            return disposable(() => fake.registered.delete(id));
        },
        executeCommand: (command: string, ...args: unknown[]): Promise<unknown> => {
            fake.executed.push({ command, args });
            const handler = fake.registered.get(command) ?? fake.builtinCommands.get(command);
            return Promise.resolve(handler?.(...args));
        },
    },
    extensions: {
        getExtension: (id: string) => fake.extensions.get(id),
    },
    env: {
        clipboard: {
            writeText: (text: string): Promise<void> => {
                fake.clipboard = text;
                return Promise.resolve();
            },
        },
    },
};

type Load = (request: string, parent: unknown, isMain: boolean) => unknown;
const loader = Module as unknown as { _load: Load };
const originalLoad = loader._load;
loader._load = function load(request, parent, isMain) {
    return request === 'vscode' ? vscode : originalLoad(request, parent, isMain);
};

/** Fake clock and timers: time moves only when a test advances it. */
export class FakeTimers {
    private time = 0;
    private nextId = 1;
    private readonly pending = new Map<number, { at: number; callback: () => void }>();

    now = (): number => this.time;

    setTimeout = (callback: () => void, delayMs: number): number => {
        const id = this.nextId++;
        this.pending.set(id, { at: this.time + delayMs, callback });
        return id;
    };

    clearTimeout = (handle: unknown): void => {
        this.pending.delete(handle as number);
    };

    /** Delays of the timers not yet run, from now. */
    get pendingDelays(): number[] {
        return [...this.pending.values()].map((timer) => timer.at - this.time);
    }

    /** Moves time forward by `ms`, running every timer that falls due, in order. */
    advance(ms: number): void {
        const end = this.time + ms;
        for (;;) {
            const due = [...this.pending.entries()]
                .filter(([, timer]) => timer.at <= end)
                .sort(([, a], [, b]) => a.at - b.at)[0];
            if (due === undefined) {
                break;
            }
            this.pending.delete(due[0]);
            this.time = due[1].at;
            due[1].callback();
        }
        this.time = end;
    }
}

/** Lets queued promise callbacks and setImmediate callbacks run. */
export function settle(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
}
