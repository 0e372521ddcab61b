"""How offers and rankings are shown to the client: code actions (with their edits), hint
diagnostics and the hover's explanation.

Each code action's ``data`` carries ``{"suggestionId", "probability"}`` (the client reads the
policy's probability there, not from the title); a verified offer's title says how many of the
workspace's tests pass with it (``✓ 12/12 tests``).
"""

from __future__ import annotations

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace import TextDocument

from .offers import Offer
from .session import Ranking, minimal_change
from .trainer_link import NO_TRAINER

KIND = types.CodeActionKind.RefactorRewrite


def workspace_edit(
    doc: TextDocument | None, offer: Offer, caps: types.ClientCapabilities
) -> types.WorkspaceEdit:
    """The offer's change as a WorkspaceEdit against ``doc``, the document's current version."""
    if doc is None or doc.source != offer.source:
        raise JsonRpcInvalidParams(
            "the document changed since this refinement was offered; ask for code actions again"
        )
    first, last, text, end_col = minimal_change(offer.source, offer.candidate.source)
    edit = types.TextEdit(
        range=types.Range(types.Position(first, 0), types.Position(last, end_col)),
        new_text=text,
    )
    if (
        caps.workspace
        and caps.workspace.workspace_edit
        and caps.workspace.workspace_edit.document_changes
    ):
        return types.WorkspaceEdit(
            document_changes=[
                types.TextDocumentEdit(
                    text_document=types.OptionalVersionedTextDocumentIdentifier(
                        doc.uri, doc.version
                    ),
                    edits=[edit],
                )
            ]
        )
    return types.WorkspaceEdit(changes={doc.uri: [edit]})


def resolves_edit(caps: types.ClientCapabilities) -> bool:
    """Whether the client fills in ``edit`` through ``codeAction/resolve``."""
    action = caps.text_document.code_action if caps.text_document else None
    support = action.resolve_support if action else None
    return bool(support and "edit" in support.properties and action.data_support)


def has_literals(caps: types.ClientCapabilities) -> bool:
    """Whether the client accepts CodeAction literals (else only Commands)."""
    action = caps.text_document.code_action if caps.text_document else None
    return bool(action and action.code_action_literal_support)


def action_title(offer: Offer, probability: float, verified: str | None) -> str:
    """``trustfix: <title> (p=0.42)``, with ``✓ 12/12 tests`` when verified."""
    check = f" {verified}" if verified else ""
    return f"trustfix: {offer.title}{check} (p={probability:.2f})"


def code_action(
    offer: Offer,
    probability: float,
    verified: str | None,
    doc: TextDocument | None,
    caps: types.ClientCapabilities,
) -> types.CodeAction | types.Command:
    """The code action (or, for old clients, the command) of one offer."""
    title = action_title(offer, probability, verified)
    command = types.Command(title=title, command="trustfix.accept", arguments=[offer.id])
    if not has_literals(caps):
        return command
    action = types.CodeAction(
        title=title,
        kind=KIND,
        command=command,
        data={"suggestionId": offer.id, "probability": probability},
    )
    if not resolves_edit(caps):
        action.edit = workspace_edit(doc, offer, caps)
    return action


def diagnostics_for(ranking: Ranking) -> list[types.Diagnostic]:
    """Hints on lines where the ranking has a refinement: fixable findings, and the policy's
    favourite when it beats STOP."""
    if not ranking.candidates:
        return []
    best = max(ranking.prob(i) for i in range(len(ranking.candidates)))
    lines: dict[int, types.Diagnostic] = {}
    fixed = {(c.proposer, c.line) for c in ranking.candidates}
    for finding in ranking.findings:
        inside = ranking.unit.start_line <= finding.line <= ranking.unit.end_line
        if (
            inside
            and finding.line not in lines
            and any(
                proposer.startswith(finding.tool) and line == finding.line
                for proposer, line in fixed
            )
        ):
            lines[finding.line] = hint(
                finding.line,
                f"{finding.code} {finding.message}; trustfix has a refinement (p={best:.2f})",
                finding.code,
            )
    top = ranking.order[0]
    candidate = ranking.candidates[top]
    if ranking.prob(top) > ranking.stop_prob and candidate.line not in lines:
        lines[candidate.line] = hint(
            candidate.line,
            f"trustfix: {candidate.title} (p={ranking.prob(top):.2f})",
            candidate.proposer,
        )
    return list(lines.values())


def hint(line: int, message: str, code: str) -> types.Diagnostic:
    """A hint diagnostic on 1-based ``line``."""
    return types.Diagnostic(
        range=types.Range(types.Position(line - 1, 0), types.Position(line, 0)),
        message=message,
        severity=types.DiagnosticSeverity.Hint,
        source="trustfix",
        code=code,
    )


def explain(
    ranking: Ranking,
    top_k: int,
    reviewer: str,
    trainer_note: str = NO_TRAINER,
    trust: dict[str, float] | None = None,
) -> str:
    """Markdown for the hover: how the policy ranked this unit's refinements."""
    policy = (
        f"policy v{ranking.policy_version}"
        if ranking.policy_version is not None
        else "a fresh, untrained policy (no checkpoint yet)"
    )
    heading = (
        f"**trustfix** — `{ranking.unit.qualname}`: {len(ranking.candidates)} candidate "
        f"refinements ranked by {policy}"
    )
    lines = [heading, ""]
    for rank, index in enumerate(ranking.order[:top_k], 1):
        c = ranking.candidates[index]
        lines.append(
            f"{rank}. {c.title} — p={ranking.prob(index):.2f} ({c.proposer}, line {c.line})"
        )
    lines += ["", f"Leave as is (STOP): p={ranking.stop_prob:.2f}", ""]
    if trust is None:
        lines.append(f"Trust in your feedback ({reviewer}): not reported yet — {trainer_note}.")
    else:
        lines.append(
            f"Trust in your feedback ({reviewer}): {trust['theta']:.2f} "
            f"(α {trust['alpha']:.1f}, β {trust['beta']:.1f}, {trust['count']} items), "
            "as the trainer estimates it."
        )
    return "\n".join(lines)
