"""Render a plain-text formulation as Markdown with LaTeX math for the lines that are formulas."""

from __future__ import annotations

import itertools
import re

_MATHY = re.compile(r"^[\w\s+\-*/<>=≤≥≠().,\[\]{}^:∑Σ∈'|]+$")
_RELATION = re.compile(r"<=|>=|==|!=|=|<|>|≤|≥|≠|∈")
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*|\.\.\.")
_BULLET = re.compile(r"^(\s*(?:[-*•]|\d+[.)])\s+)")
_KEYWORDS = {
    "maximize": r"\text{maximize}\quad", "minimize": r"\text{minimize}\quad", "max": r"\max", "min": r"\min",
    "subject": r"\text{subject}\ ", "to": r"\text{to}\quad", "st": r"\text{s.t.}\quad", "forall": r"\quad\forall",
    "for": r"\quad\text{for}\ ", "all": r"\text{all}\ ", "in": r"\in", "and": r"\ \text{and}\ ", "sum": r"\sum",
    "integer": r"\ \text{integer}", "integers": r"\ \text{integers}", "binary": r"\ \text{binary}",
    "free": r"\ \text{free}",
}
_SYMBOLS = [("<=", r" \le "), (">=", r" \ge "), ("!=", r" \ne "), ("==", "="), ("*", r" \cdot "),
            ("≤", r" \le "), ("≥", r" \ge "), ("≠", r" \ne "), ("∈", r" \in "), ("Σ", r"\sum "), ("∑", r"\sum ")]


def is_formula(line: str) -> bool:
    """A line of math (``x + y <= 4``, ``maximize 3x + 2y``), not a sentence (``x = number of chairs``)."""
    if not line or "$" in line or not _MATHY.match(line):
        return False
    if not (_RELATION.search(line) or line.split()[0].lower() in ("maximize", "minimize", "max", "min")):
        return False
    words = [t for t in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", line)
             if t.lower() not in _KEYWORDS and len(t) > 1 and not t.lower().startswith("sum")]
    # two names side by side ("number of chairs") is prose; formulas join names with operators
    pairs = itertools.pairwise(words)
    return not any(re.search(rf"\b{re.escape(a)}\s+{re.escape(b)}\b", line) for a, b in pairs)


def split_notes(line: str) -> tuple[str, str, str]:
    """``(label, formula, note)`` of ``Carpentry: 2x + 4y <= 160  (hours)``; label and note may be empty."""
    label, body, note = "", line.strip(), ""
    head = re.match(r"^([A-Za-z][\w \-]*):\s+(.*)$", body)
    if head and not _RELATION.search(head.group(1)):
        label, body = head.group(1), head.group(2)
    tail = re.match(r"^(.*?)\s+(\([A-Za-z][A-Za-z ,;'-]+\)|(?:#|//).*)$", body)
    if tail and tail.group(1):
        body, note = tail.group(1), tail.group(2).lstrip("#/ ").removeprefix("(").removesuffix(")")
    return label, body, note


def _name(match: re.Match[str]) -> str:
    token = match.group(0)
    if token.lower() in _KEYWORDS:
        return " " + _KEYWORDS[token.lower()] + " "
    if token == "...":
        return r"\ldots"
    base, _, sub = token.partition("_")
    if base.lower() == "sum":
        return rf"\sum_{{{sub}}}" if sub else r"\sum"
    digits = re.match(r"^([A-Za-z]+)(\d+)$", base)
    if digits and not sub:
        base, sub = digits.groups()
    head = base if len(base) == 1 else rf"\mathrm{{{base}}}"
    if not sub:
        return head
    escaped = sub.replace("_", "\\_")
    sub_tex = sub if len(sub) <= 2 or sub.isdigit() else rf"\mathrm{{{escaped}}}"
    return f"{head}_{{{sub_tex}}}"


def to_latex(line: str) -> str:
    """LaTeX for one formula line."""
    text = re.sub(r"\bfor\s+all\b", "forall", re.sub(r"\bs\.t\.", "st", line))
    text = _TOKEN.sub(_name, text)
    for plain, tex in _SYMBOLS:
        text = text.replace(plain, tex)
    return " ".join(text.split())


def formulation_markdown(text: str) -> str:
    """Markdown for a formulation: headings as bold lines, prose as written, formulas as ``$...$``."""
    out = []
    for line in text.strip().splitlines():
        bullet = _BULLET.match(line)
        prefix = bullet.group(1) if bullet else ""
        label, body, note = split_notes(line[len(prefix):])
        heading = re.match(r"^\s*#+\s*(.+?)\s*#*\s*$", line)
        if heading:  # section names as bold lines, not page-size headings
            out.append(f"**{heading.group(1)}**  ")
        elif not is_formula(body):
            out.append(line.rstrip() + "  " if line.strip() else "")
        else:
            math = f"${to_latex(body)}$"
            out.append(prefix + (f"{label}: " if label else "") + math + (f" ({note})" if note else "") + "  ")
    return "\n".join(out)
