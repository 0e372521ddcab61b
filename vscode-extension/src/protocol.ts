/**
 * The contract with `trustfix serve`: the server's command ids and their arguments, its status
 * notification, and the replies the client reads. README.md ("Server contract") documents it.
 */

/** Commands the server registers (workspace/executeCommand); the client must not register them. */
export const ServerCommands = {
    accept: 'trustfix.accept',
    reject: 'trustfix.reject',
    rate: 'trustfix.rate',
    comment: 'trustfix.comment',
    trust: 'trustfix.trust',
} as const;

/** Commands the extension contributes; their ids differ from every server command id. */
export const ClientCommands = {
    refineHere: 'trustfix.refineHere',
    rejectSuggestion: 'trustfix.rejectSuggestion',
    commentOnSuggestion: 'trustfix.commentOnSuggestion',
    rateSuggestion: 'trustfix.rateSuggestion',
    showTrust: 'trustfix.showTrust',
    restartServer: 'trustfix.restartServer',
} as const;

/** Server -> client notification carrying the policy version and the reviewer's trust. */
export const STATUS_NOTIFICATION = 'trustfix/status';
/** The code action kind of every trustfix refinement. */
export const REFINE_KIND = 'refactor.rewrite';
/** Every trustfix code action title starts with this. */
export const TITLE_PREFIX = 'trustfix:';
export const MAX_COMMENT_LENGTH = 2000;

export interface StatusParams {
    policyVersion: number | null;
    trust: number | null;
    reviewer: string;
}

export interface TrustReply {
    reviewer: string;
    trust: number | null;
    alpha: number | null;
    beta: number | null;
    policyVersion: number | null;
    lastFeedback: string | null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
    return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function numberOrNull(value: unknown): value is number | null {
    return value === null || (typeof value === 'number' && Number.isFinite(value));
}

/** Validates a `trustfix/status` notification's parameters. */
export function parseStatusParams(value: unknown): StatusParams | undefined {
    if (!isRecord(value)) {
        return undefined;
    }
    const { policyVersion, trust, reviewer } = value;
    if (!numberOrNull(policyVersion) || !numberOrNull(trust) || typeof reviewer !== 'string') {
        return undefined;
    }
    return { policyVersion, trust, reviewer };
}

/** Validates the reply to `trustfix.trust`; throws on anything else. */
export function parseTrustReply(value: unknown): TrustReply {
    if (isRecord(value)) {
        const { reviewer, trust, alpha, beta, policyVersion } = value;
        const lastFeedback = value.lastFeedback ?? null;
        if (
            typeof reviewer === 'string' &&
            numberOrNull(trust) &&
            numberOrNull(alpha) &&
            numberOrNull(beta) &&
            numberOrNull(policyVersion) &&
            (lastFeedback === null || typeof lastFeedback === 'string')
        ) {
            return { reviewer, trust, alpha, beta, policyVersion, lastFeedback };
        }
    }
    throw new Error(`unexpected reply to ${ServerCommands.trust}: ${JSON.stringify(value)}`);
}

/** A suggestion id as the server attaches it: a non-empty string. */
export function checkSuggestionId(id: unknown): string {
    if (typeof id !== 'string' || id.trim() === '') {
        throw new Error(`not a suggestion id: ${JSON.stringify(id)}`);
    }
    return id;
}

/** Arguments of `trustfix.reject`: [suggestionId]. */
export function rejectArguments(id: string): [string] {
    return [checkSuggestionId(id)];
}

/** Arguments of `trustfix.rate`: [suggestionId, score] with an integer score 1–5. */
export function rateArguments(id: string, score: number): [string, number] {
    if (!Number.isInteger(score) || score < 1 || score > 5) {
        throw new Error(`a rating is an integer from 1 to 5, not ${String(score)}`);
    }
    return [checkSuggestionId(id), score];
}

/** Arguments of `trustfix.comment`: [suggestionId, text], the text trimmed and not empty. */
export function commentArguments(id: string, text: string): [string, string] {
    const trimmed = text.trim();
    if (trimmed === '') {
        throw new Error('a comment cannot be empty');
    }
    if (trimmed.length > MAX_COMMENT_LENGTH) {
        throw new Error(`a comment has at most ${String(MAX_COMMENT_LENGTH)} characters`);
    }
    return [checkSuggestionId(id), trimmed];
}

/** `trustfix: Use enumerate ✓ 3/3 tests (p=0.42)` -> 'Use enumerate ✓ 3/3 tests' (the probability is shown apart). */
export function actionTitle(title: string): string {
    const body = title.startsWith(TITLE_PREFIX) ? title.slice(TITLE_PREFIX.length).trim() : title.trim();
    return body.replace(/\s*\(p=\d*\.?\d+\)$/, '');
}

/** The policy's probability of a trustfix code action, from its `data` (`{suggestionId, probability}`). */
export function actionProbability(action: object): number | undefined {
    const data: unknown = 'data' in action ? action.data : undefined;
    if (typeof data !== 'object' || data === null) {
        return undefined;
    }
    const probability: unknown = (data as Record<string, unknown>).probability;
    return typeof probability === 'number' && Number.isFinite(probability) ? probability : undefined;
}

function formatNumber(value: number, digits: number): string {
    return value.toFixed(digits);
}

/** The information message of "Show trust". */
export function formatTrustMessage(reply: TrustReply): string {
    const who = reply.reviewer === '' ? 'You' : `You (${reply.reviewer})`;
    const trust =
        reply.trust === null
            ? `${who}: no trust estimate yet — give some feedback first.`
            : `${who}: trust ${formatNumber(reply.trust, 2)}` +
              (reply.alpha !== null && reply.beta !== null
                  ? ` (α ${formatNumber(reply.alpha, 1)}, β ${formatNumber(reply.beta, 1)}).`
                  : '.');
    const policy =
        reply.policyVersion === null ? 'No policy version published yet.' : `Policy version ${String(reply.policyVersion)}.`;
    const last = reply.lastFeedback === null ? 'No feedback recorded yet.' : `Last feedback: ${reply.lastFeedback}`;
    return `trustfix — ${trust} ${policy} ${last}`;
}
