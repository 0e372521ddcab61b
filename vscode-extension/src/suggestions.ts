/**
 * Remembers the suggestions the server offered (from the code actions that pass through the
 * language client), so Reject / Comment / Rate can offer the recent ones in a quick pick.
 */
import type { Middleware } from 'vscode-languageclient';
import { ServerCommands, actionProbability, actionTitle } from './protocol';

export type SuggestionState = 'offered' | 'accepted' | 'rejected';

export interface RecordedSuggestion {
    id: string;
    title: string;
    probability: number | undefined;
    uri: string;
    offeredAt: number;
    state: SuggestionState;
    rating: number | undefined;
    commented: boolean;
}

/** The shapes of the code actions and commands a code action provider returns. */
interface CommandLike {
    title: string;
    command: string;
    arguments?: unknown[];
}
interface CodeActionLike {
    title: string;
    command?: CommandLike;
    /** `{suggestionId, probability}` on trustfix actions. */
    data?: unknown;
}

export const DEFAULT_CAPACITY = 50;

/** The suggestion id of a trustfix code action (its `trustfix.accept` argument), if it is one. */
export function suggestionIdOf(action: CodeActionLike | CommandLike): string | undefined {
    const command = typeof action.command === 'string' ? (action as CommandLike) : action.command;
    if (command?.command !== ServerCommands.accept) {
        return undefined;
    }
    const id: unknown = command.arguments?.[0];
    return typeof id === 'string' && id !== '' ? id : undefined;
}

export class SuggestionRecorder {
    /** Oldest first; a re-offered suggestion moves to the end. */
    private readonly suggestions = new Map<string, RecordedSuggestion>();
    private lastAcceptedId: string | undefined;

    constructor(private readonly capacity: number = DEFAULT_CAPACITY) {}

    /** Records the trustfix actions among `actions`, offered for `uri` at `now`; returns how many. */
    recordOffered(actions: readonly (CodeActionLike | CommandLike)[], uri: string, now: number): number {
        let count = 0;
        for (const action of actions) {
            const id = suggestionIdOf(action);
            if (id === undefined) {
                continue;
            }
            const previous = this.suggestions.get(id);
            this.suggestions.delete(id);
            this.suggestions.set(id, {
                id,
                title: actionTitle(action.title),
                probability: actionProbability(action),
                uri,
                offeredAt: now,
                state: previous?.state ?? 'offered',
                rating: previous?.rating,
                commented: previous?.commented ?? false,
            });
            count += 1;
        }
        for (const id of this.suggestions.keys()) {
            if (this.suggestions.size <= this.capacity) {
                break;
            }
            this.suggestions.delete(id);
        }
        return count;
    }

    markAccepted(id: string): void {
        const suggestion = this.suggestions.get(id);
        if (suggestion !== undefined) {
            suggestion.state = 'accepted';
            this.lastAcceptedId = id;
        }
    }

    markRejected(id: string): void {
        const suggestion = this.suggestions.get(id);
        if (suggestion !== undefined) {
            suggestion.state = 'rejected';
        }
    }

    markRated(id: string, score: number): void {
        const suggestion = this.suggestions.get(id);
        if (suggestion !== undefined) {
            suggestion.rating = score;
        }
    }

    markCommented(id: string): void {
        const suggestion = this.suggestions.get(id);
        if (suggestion !== undefined) {
            suggestion.commented = true;
        }
    }

    get(id: string): RecordedSuggestion | undefined {
        return this.suggestions.get(id);
    }

    /** Most recently offered first. */
    recent(): RecordedSuggestion[] {
        return [...this.suggestions.values()].reverse();
    }

    lastAccepted(): RecordedSuggestion | undefined {
        return this.lastAcceptedId === undefined ? undefined : this.suggestions.get(this.lastAcceptedId);
    }
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago". */
export function formatAge(ms: number): string {
    const seconds = Math.max(0, Math.floor(ms / 1000));
    if (seconds < 5) {
        return 'just now';
    }
    if (seconds < 60) {
        return `${String(seconds)} s ago`;
    }
    if (seconds < 3600) {
        return `${String(Math.floor(seconds / 60))} min ago`;
    }
    if (seconds < 86_400) {
        return `${String(Math.floor(seconds / 3600))} h ago`;
    }
    return `${String(Math.floor(seconds / 86_400))} d ago`;
}

export interface SuggestionPickItem {
    label: string;
    description: string;
    detail: string;
    suggestionId: string;
}

function stateText(suggestion: RecordedSuggestion): string {
    const parts: string[] = [suggestion.state];
    if (suggestion.rating !== undefined) {
        parts.push(`rated ${String(suggestion.rating)}`);
    }
    if (suggestion.commented) {
        parts.push('commented');
    }
    return parts.join(', ');
}

/** Quick pick items, most recent first, and the index of the last accepted one (else 0). */
export function suggestionPickItems(
    recorder: SuggestionRecorder,
    now: number,
    relativePath: (uri: string) => string,
): { items: SuggestionPickItem[]; activeIndex: number } {
    const recent = recorder.recent();
    const items = recent.map((suggestion) => ({
        label: suggestion.title,
        description:
            (suggestion.probability === undefined ? '' : `p=${suggestion.probability.toFixed(2)} · `) +
            `${relativePath(suggestion.uri)} · ${formatAge(now - suggestion.offeredAt)}`,
        detail: stateText(suggestion),
        suggestionId: suggestion.id,
    }));
    const lastAccepted = recorder.lastAccepted();
    const activeIndex = lastAccepted === undefined ? 0 : Math.max(0, recent.indexOf(lastAccepted));
    return { items, activeIndex };
}

/** Language client middleware that feeds the recorder: offered code actions, accepted suggestions. */
export function recordingMiddleware(recorder: SuggestionRecorder, now: () => number): Middleware {
    return {
        provideCodeActions: async (document, range, context, token, next) => {
            const actions = await next(document, range, context, token);
            if (actions) {
                recorder.recordOffered(actions, document.uri.toString(), now());
            }
            return actions;
        },
        executeCommand: (command, args, next): unknown => {
            const id: unknown = args[0];
            if (command === ServerCommands.accept && typeof id === 'string') {
                recorder.markAccepted(id);
            }
            return next(command, args);
        },
    };
}
