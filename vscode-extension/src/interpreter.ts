/** Which Python runs the server, how it is started, and whether trustfix is installed in it. */
import { execFile } from 'node:child_process';
import * as vscodeapi from './vscodeapi';

export const PYTHON_EXTENSION_ID = 'ms-python.python';
export const FALLBACK_INTERPRETER = 'python3';
const CHECK_TIMEOUT_MS = 20_000;

export type InterpreterSource = 'setting' | 'pythonExtension' | 'default';

export interface ResolvedInterpreter {
    command: string[];
    source: InterpreterSource;
}

/** The part of the Python extension's API (`environments`) that trustfix uses. */
export interface PythonExtensionApi {
    environments: {
        getActiveEnvironmentPath(resource?: vscodeapi.Uri): { id: string; path: string };
        resolveEnvironment(
            environment: { id: string; path: string } | string,
        ): Thenable<{ executable: { uri?: { fsPath: string } | undefined } } | undefined>;
        onDidChangeActiveEnvironmentPath(listener: () => unknown): { dispose(): unknown };
    };
}

function isPythonExtensionApi(api: unknown): api is PythonExtensionApi {
    if (typeof api !== 'object' || api === null || !('environments' in api)) {
        return false;
    }
    const environments: unknown = api.environments;
    return (
        typeof environments === 'object' &&
        environments !== null &&
        'getActiveEnvironmentPath' in environments &&
        typeof environments.getActiveEnvironmentPath === 'function'
    );
}

/** The Python extension's API when that extension is installed, else undefined. */
export async function getPythonExtensionApi(): Promise<PythonExtensionApi | undefined> {
    const api = await vscodeapi.getExtensionApi(PYTHON_EXTENSION_ID);
    return isPythonExtensionApi(api) ? api : undefined;
}

/** The executable of the Python extension's active environment for `resource`, if it has one. */
export async function activeEnvironmentExecutable(
    api: PythonExtensionApi,
    resource?: vscodeapi.Uri,
): Promise<string | undefined> {
    const active = api.environments.getActiveEnvironmentPath(resource);
    const resolved = await api.environments.resolveEnvironment(active);
    const executable = resolved?.executable.uri?.fsPath ?? active.path;
    return executable.length > 0 ? executable : undefined;
}

/** `trustfix.interpreter` when set, else the Python extension's active environment, else `python3`. */
export async function resolveInterpreter(
    configured: readonly string[],
    pythonApi: PythonExtensionApi | undefined,
    resource?: vscodeapi.Uri,
): Promise<ResolvedInterpreter> {
    if (configured.length > 0) {
        return { command: [...configured], source: 'setting' };
    }
    if (pythonApi !== undefined) {
        const executable = await activeEnvironmentExecutable(pythonApi, resource);
        if (executable !== undefined) {
            return { command: [executable], source: 'pythonExtension' };
        }
    }
    return { command: [FALLBACK_INTERPRETER], source: 'default' };
}

/** The executable and arguments that start the language server over stdio. */
export function serverCommand(interpreter: readonly string[]): { command: string; args: string[] } {
    const [command, ...rest] = interpreter;
    if (command === undefined) {
        throw new Error('empty interpreter command');
    }
    return { command, args: [...rest, '-m', 'trustfix', 'serve'] };
}

function shellQuote(part: string): string {
    return /^[\w@%+=:,./-]+$/.test(part) ? part : `'${part.replace(/'/g, `'\\''`)}'`;
}

/** A shell line, e.g. `python3 -m pip install trustfix`. */
export function commandLine(parts: readonly string[]): string {
    return parts.map(shellQuote).join(' ');
}

/** The command that installs trustfix into `interpreter`. */
export function installCommand(interpreter: readonly string[]): string {
    return commandLine([...interpreter, '-m', 'pip', 'install', 'trustfix']);
}

export type InstallCheck =
    | { kind: 'installed' }
    | { kind: 'notInstalled'; detail: string }
    | { kind: 'interpreterNotFound'; detail: string };

/** Runs `<interpreter> -c "import trustfix"` and says whether it worked, and if not, why. */
export function checkInstalled(interpreter: readonly string[], cwd?: string): Promise<InstallCheck> {
    const { command, args } = serverCommand(interpreter);
    const checkArgs = [...args.slice(0, -3), '-c', 'import trustfix'];
    return new Promise((resolve) => {
        execFile(command, checkArgs, { cwd, timeout: CHECK_TIMEOUT_MS, windowsHide: true }, (error, _stdout, stderr) => {
            if (error === null) {
                resolve({ kind: 'installed' });
            } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
                resolve({ kind: 'interpreterNotFound', detail: error.message });
            } else {
                const lastLine = stderr.trim().split('\n').pop() ?? '';
                resolve({ kind: 'notInstalled', detail: lastLine === '' ? error.message : lastLine });
            }
        });
    });
}
