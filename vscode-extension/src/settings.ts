/** The `trustfix.*` settings: reading, validating and what the server receives of them. */
import * as os from 'node:os';
import * as vscodeapi from './vscodeapi';

export const SECTION = 'trustfix';
export const ROLES = ['developer', 'student', 'instructor'] as const;
export const TELEMETRY = ['off', 'noCode', 'all'] as const;
export const TRACE = ['off', 'messages', 'verbose'] as const;
export const DEFAULT_TOP_K = 3;
export const MAX_TOP_K = 20;

export type Role = (typeof ROLES)[number];
export type Telemetry = (typeof TELEMETRY)[number];
export type Trace = (typeof TRACE)[number];

export interface TrustfixSettings {
    /** The interpreter command, variables expanded; empty when not configured. */
    interpreter: string[];
    reviewerId: string;
    role: Role;
    trainerEndpoint: string;
    topK: number;
    telemetry: Telemetry;
    traceServer: Trace;
}

/** What the server receives as `initializationOptions` (the settings it acts on). */
export interface InitializationOptions {
    reviewerId: string;
    role: Role;
    trainerEndpoint: string;
    topK: number;
    telemetry: Telemetry;
}

/** Values that `${...}` variables in `trustfix.interpreter` expand to. */
export interface VariableContext {
    workspaceFolder: string | undefined;
    userHome: string;
    env: NodeJS.ProcessEnv;
}

/** The part of a WorkspaceConfiguration that settings are read through. */
export interface ConfigurationReader {
    get(key: string): unknown;
}

function oneOf<T extends string>(allowed: readonly T[], value: unknown, fallback: T): T {
    return allowed.find((candidate) => candidate === value) ?? fallback;
}

function text(value: unknown): string {
    return typeof value === 'string' ? value.trim() : '';
}

function topK(value: unknown): number {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
        return DEFAULT_TOP_K;
    }
    return Math.min(MAX_TOP_K, Math.max(1, Math.round(value)));
}

/** Expands `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~` in one argument. */
export function expandVariables(value: string, context: VariableContext): string {
    const expanded = value.replace(/\$\{(workspaceFolder|userHome|env:([^}]+))\}/g, (match, name: string, envName?: string) => {
        if (envName !== undefined) {
            return context.env[envName] ?? '';
        }
        if (name === 'userHome') {
            return context.userHome;
        }
        return context.workspaceFolder ?? match;
    });
    if (expanded === '~' || expanded.startsWith('~/') || expanded.startsWith('~\\')) {
        return context.userHome + expanded.slice(1);
    }
    return expanded;
}

/** `trustfix.interpreter` as a command: a string is one path, an array a command with arguments. */
export function interpreterCommand(value: unknown, context: VariableContext): string[] {
    const parts = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [];
    return parts
        .filter((part): part is string => typeof part === 'string')
        .map((part) => expandVariables(part.trim(), context))
        .filter((part) => part.length > 0);
}

/** Reads and validates the settings; anything malformed falls back to its default. */
export function readSettings(config: ConfigurationReader, context: VariableContext): TrustfixSettings {
    return {
        interpreter: interpreterCommand(config.get('interpreter'), context),
        reviewerId: text(config.get('reviewerId')),
        role: oneOf(ROLES, config.get('role'), 'developer'),
        trainerEndpoint: text(config.get('trainerEndpoint')),
        topK: topK(config.get('topK')),
        telemetry: oneOf(TELEMETRY, config.get('telemetry'), 'all'),
        traceServer: oneOf(TRACE, config.get('trace.server'), 'off'),
    };
}

export function toInitializationOptions(settings: TrustfixSettings): InitializationOptions {
    return {
        reviewerId: settings.reviewerId,
        role: settings.role,
        trainerEndpoint: settings.trainerEndpoint,
        topK: settings.topK,
        telemetry: settings.telemetry,
    };
}

/** The workspace folder whose settings apply: trustfix runs one server per window. */
export function primaryWorkspaceFolder(): vscodeapi.WorkspaceFolder | undefined {
    return vscodeapi.getWorkspaceFolders()[0];
}

/** The current settings of the primary workspace folder (or the user's, without a folder). */
export function getSettings(): TrustfixSettings {
    const folder = primaryWorkspaceFolder();
    const config = vscodeapi.getConfiguration(SECTION, folder?.uri);
    return readSettings(config, {
        workspaceFolder: folder?.uri.fsPath,
        userHome: os.homedir(),
        env: process.env,
    });
}
