"""Drafting candidate insights from a contrast (a wrong and a right program).

At most one model call per contrast (and one to generalize a condition): ``extract`` (a modeling
lesson from the two programs and the lines that differ), ``extract_code`` (a code lesson from the
error and the repaired program), ``integrality_condition`` (after an integrality flip the change
is known; the model says only when it applies) or ``edit_condition`` (the other known edits: a
constraint's direction, an equality made a bound, the objective's sense, a constraint added or
dropped, a number the text states written where the program had another; the explanation is
``prompts.EDIT_LESSONS``' for its kind and the example the edit (for a number, the line it
changed), so the two always agree; the condition quotes the text the edited constraint says,
or else the model writes it). A small model often copies the prompt's template: placeholder labels become
the nearest real label, an empty example becomes the diff, drafts that still say nothing are
dropped, a condition that repeats the problem's numbers is rewritten in general words, and one
that says nothing about where the lesson applies (it names the mistake, "when the variable
domains are not correctly specified", or a step of every program, "when defining the variables")
is asked for once more (``situate``) and dropped when it still does.
When the contrast knows its edit exactly (a single-line edit, or the smallest part of a
model's correction that reaches the answer), that edit is the draft's example. A contrast of a
few known edits that reach the answer only together (``Contrast.parts``) gives one draft for
each edit, as that edit alone would, checked together; none when one of them drafts nothing.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from alphaopt.agent import prompts
from alphaopt.agent.applied import quoted_condition
from alphaopt.agent.retrieval import LibraryRetriever
from alphaopt.learning.contrasts import Contrast
from alphaopt.learning.ledger import Ledger
from alphaopt.learning.variants import text_phrase
from alphaopt.llm.client import CallContext
from library import InsightDraft, LibraryStore, Task
from library.taxonomy import Stage, canonical

_PLACEHOLDER_LABELS = {"category", "subcategory"}  # the prompt's own example values, copied
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class _Drafts(BaseModel):
    insights: list[InsightDraft] = Field(default_factory=list, max_length=3)


class Drafter:
    """Turns contrasts into candidate insights (model calls through the learner's ledger)."""

    def __init__(self, store: LibraryStore, retriever: LibraryRetriever, ledger: Ledger) -> None:
        self.store, self.retriever, self.ledger = store, retriever, ledger
        self._unplaced: dict[str, int] = {}  # task id -> drafts dropped for a condition that says nothing

    def take_unplaced(self, task_id: str) -> int:
        """How many drafts of this problem were dropped since the last call because their condition
        said nothing about where they apply, even once situated (one problem is learned by one
        thread, so each counts its own)."""
        return self._unplaced.pop(task_id, 0)

    def drafts(self, task: Task, contrast: Contrast, run_id: str) -> list[InsightDraft]:
        """The candidate insights drafted from one contrast (none when the model's say nothing)."""
        if contrast.parts:  # several known edits that reach the answer only together: a lesson each, or none
            found: list[InsightDraft] = []
            for part in contrast.parts:
                drafted = self.drafts(task, part, run_id)
                if not drafted:
                    return []
                found += drafted
            return found
        if contrast.step == "integrality_condition":
            return self._integrality(task, contrast, run_id)
        if contrast.step == "edit_condition":
            return self._known_edit(task, contrast, run_id)
        if contrast.step == "extract_code":
            labels = self._label_lines(with_stage=False, stage="code_implementation")
            found = self._drafts("extract_code", task, run_id, contrast, error=contrast.outcome,
                                 right=contrast.right, labels=labels)
            return [d for d in found if d.stage.value == "code_implementation"]
        diff = contrast.example or diff_example(contrast.wrong, contrast.right, max_lines=6, max_chars=800)
        return self._drafts("extract", task, run_id, contrast, outcome=contrast.outcome, wrong=contrast.wrong,
                            right=contrast.right, labels=self._label_lines(with_stage=True),
                            diff=diff or "(only the layout)")

    def _integrality(self, task: Task, contrast: Contrast, run_id: str) -> list[InsightDraft]:
        """The draft after an integrality flip: the change itself is known, so the explanation and
        the example state it; the model is asked only when the lesson applies (the condition),
        which is what a small model could not isolate from a whole-program contrast; a condition
        that repeats the problem's numbers is put in general words as a known edit's is."""
        integer = contrast.change.endswith("integer")  # "made the continuous variables integer", or "... continuous"
        explanation = (
            "declare these quantities with domain=pyo.NonNegativeIntegers; the common mistake is continuous "
            "variables, whose optimum is fractional and differs from the whole-number optimum" if integer else
            "declare these quantities with domain=pyo.NonNegativeReals; the common mistake is integer variables "
            "where fractional amounts are allowed, which makes the optimum worse")
        condition = self._in_general_words(self.rewrite_condition("integrality_condition", CallContext(
            run_id=run_id, task_id=task.id, node="integrality_condition"), max_tokens=80, problem=task.text,
            change=contrast.change), explanation, task, run_id)
        condition = self.situated(condition, explanation, Stage.GENERAL_FORMULATION, task, run_id)
        if not _usable(condition, task.text):
            return []
        example = contrast.example or diff_example(contrast.wrong, contrast.right) or (
            "wrong: domain=pyo.NonNegativeReals right: domain=pyo.NonNegativeIntegers" if integer else
            "wrong: domain=pyo.NonNegativeIntegers right: domain=pyo.NonNegativeReals")
        return [InsightDraft(stage=Stage.GENERAL_FORMULATION, level1="variables", level2="integrality",
                             condition=condition, explanation=explanation, example=example)]

    def _known_edit(self, task: Task, contrast: Contrast, run_id: str) -> list[InsightDraft]:
        """The draft of a contrast whose programs differ by one known edit: what the edit does is
        known (the explanation of its kind, its operators filled in; the example is the edit).
        When the edited or added constraint writes a number of the text, the condition quotes the
        words around it (``variants.text_phrase``, numbers as N): the text that calls for the edit,
        which the model, asked, attributed to other parts of the text. Otherwise the model is
        asked when the lesson applies; a condition that repeats the problem's numbers is asked
        for once more in general words, and the numbers it still repeats become "a stated
        number". An edit of no fixed label takes the modeling label (not a code one) nearest to
        the lesson."""
        level1, level2, template = prompts.EDIT_LESSONS[contrast.kind]
        explanation = template.format(**_operators(contrast))
        # a number alone says nothing of where it goes: its example is the line it changed
        line = diff_example(contrast.wrong, contrast.right) if contrast.kind == "number" else ""
        example = line or contrast.example
        phrase = text_phrase(task.text, _right_part(example)) if contrast.kind in _QUOTED else ""
        if phrase:
            condition = quoted_condition(phrase)
        else:
            condition = self._in_general_words(self.rewrite_condition("edit_condition", CallContext(
                run_id=run_id, task_id=task.id, node="edit_condition"), max_tokens=80, problem=task.text,
                change=contrast.change, example=example), explanation, task, run_id)
            condition = self.situated(condition, explanation, Stage.GENERAL_FORMULATION, task, run_id)
        if not _usable(condition, task.text):
            return []
        stage = Stage.GENERAL_FORMULATION
        if level1 is None or level2 is None:
            modeling = [s.value for s in Stage if s != Stage.CODE_IMPLEMENTATION]
            label = self._nearest_label(f"{condition} {explanation}", modeling)
            if label is None:
                return []
            stage, level1, level2 = Stage(label[0]), label[1], label[2]
        return [InsightDraft(stage=stage, level1=level1, level2=level2, condition=condition,
                             explanation=explanation, example=example)]

    def _nearest_label(self, text: str, stages: list[str]) -> tuple[str, str, str] | None:
        """The taxonomy label of one of ``stages`` whose definition is nearest to ``text``."""
        return next((lab for lab in self.retriever.labels_for(text, 100) if lab[0] in stages), None)

    def _label_lines(self, *, with_stage: bool, stage: str | None = None) -> str:
        """The taxonomy labels (of one stage, or all) for an extraction prompt, one per line."""
        return "\n".join((f"{lab.stage.value} / " if with_stage else "") + f"{lab.level1} / {lab.level2}"
                         for lab in self.store.labels() if (stage is None or lab.stage.value == stage)
                         and not {canonical(lab.level1), canonical(lab.level2)} & _PLACEHOLDER_LABELS)

    def _drafts(self, step: str, task: Task, run_id: str, contrast: Contrast, **kwargs: Any) -> list[InsightDraft]:
        """Drafts from one extraction call, mended where the model left the template's placeholders
        (see ``_mend``) and dropped where they still say nothing."""
        messages, sha = prompts.render(step, problem=task.text, **kwargs)
        reply = self.ledger.complete(messages, prompt_name=step, prompt_sha=sha, max_tokens=500, schema=_Drafts,
                                     context=CallContext(run_id=run_id, task_id=task.id, node=step))
        parsed = reply.parsed if isinstance(reply.parsed, _Drafts) else _lenient(reply.text)
        if not parsed:
            return []
        drafts = [d for d in (self._mend(d, contrast) for d in parsed.insights) if _meaningful(d)]
        found = []
        for draft in drafts:
            condition = self.situated(draft.condition, draft.explanation, draft.stage, task, run_id)
            if condition:
                found.append(self._generalize(draft.model_copy(update={"condition": condition}), task, run_id))
        return found

    def situated(self, condition: str, explanation: str, stage: Stage, task: Task, run_id: str) -> str:
        """The condition, or, where it says nothing about where the lesson applies (``vacuous``),
        the one a ``situate`` call writes instead; "" when that one says nothing either (the draft
        is dropped: a check of it would cost solves, and no retrieval could place it)."""
        condition = unechoed(condition)
        flaw = vacuous(condition, stage)
        if flaw is None:
            return condition
        words = prompts.SITUATE_WHAT["code" if stage == Stage.CODE_IMPLEMENTATION else "modeling"]
        situated = self.rewrite_condition("situate", CallContext(run_id=run_id, task_id=task.id, node="situate"),
                                          max_tokens=80, problem=task.text, flaw=flaw, explanation=explanation,
                                          **words)
        situated = unechoed(situated)
        usable = situated.lower().startswith("when") and vacuous(situated, stage) is None \
            and not prompts.copies_instructions(situated)
        if not usable:
            self._unplaced[task.id] = self._unplaced.get(task.id, 0) + 1
        return situated if usable else ""

    def _generalize(self, draft: InsightDraft, task: Task, run_id: str) -> InsightDraft:
        """A condition that repeats numbers from its source problem would only ever match that
        problem: ask once for it in general words (the counterfactual check still follows)."""
        if not specific(draft.condition, task.text):
            return draft
        condition = self.general_condition(draft.condition, draft.explanation,
                                           CallContext(run_id=run_id, task_id=task.id, node="generalize"))
        if not condition or specific(condition, task.text):
            return draft
        return draft.model_copy(update={"condition": condition})

    def _in_general_words(self, condition: str, explanation: str, task: Task, run_id: str) -> str:
        """A condition the model wrote for a known change: one that repeats the problem's numbers
        is asked for once more in general words, and the numbers it still repeats become "a
        stated number"."""
        if not specific(condition, task.text):
            return condition
        general = self.general_condition(condition, explanation, CallContext(
            run_id=run_id, task_id=task.id, node="generalize"))
        return unnumbered(general if general.lower().startswith("when") else condition, task.text)

    def general_condition(self, condition: str, explanation: str, context: CallContext) -> str:
        """One ``generalize`` call: the condition rewritten in general words (may be empty)."""
        return self.rewrite_condition("generalize", context, max_tokens=80, condition=condition,
                                      explanation=explanation)

    def rewrite_condition(self, prompt_name: str, context: CallContext, *, max_tokens: int, **fields: Any) -> str:
        """One call of a prompt that answers with a condition only; the condition, on one line
        and unquoted (may be empty)."""
        messages, sha = prompts.render(prompt_name, **fields)
        reply = self.ledger.complete(messages, prompt_name=prompt_name, prompt_sha=sha, max_tokens=max_tokens,
                                     context=context)
        return " ".join(reply.text.strip().strip('"').split())

    def _mend(self, draft: InsightDraft, contrast: Contrast) -> InsightDraft:
        """A small model often copies the prompt's placeholders. Labels copied from the template
        become the taxonomy label (of the draft's stage) whose definition is nearest to the
        draft's text; an example with nothing in it ("wrong: ... right: ...") becomes the lines
        that differ between the wrong and the right program. A known edit is the example."""
        update: dict[str, Any] = {}
        if {canonical(draft.level1), canonical(draft.level2)} & _PLACEHOLDER_LABELS:
            label = self._nearest_label(f"{draft.condition} {draft.explanation}", [draft.stage.value])
            if label is not None:
                update.update(level1=label[1], level2=label[2])
        if contrast.example:
            update["example"] = contrast.example
        elif not _informative(draft.example):
            example = diff_example(contrast.wrong, contrast.right)
            if example:
                update["example"] = example
        return draft.model_copy(update=update) if update else draft


def _meaningful(draft: InsightDraft) -> bool:
    """Drop drafts that say nothing: labels, a condition or an explanation copied from the prompt's
    template, a condition copied from the prompts' instructions, or an example with nothing in it."""
    if {canonical(draft.level1), canonical(draft.level2)} & _PLACEHOLDER_LABELS:
        return False
    if "..." in draft.condition or "..." in draft.explanation:  # the template's own text, copied
        return False
    if prompts.copies_instructions(draft.condition):
        return False
    return _informative(draft.example)


_MISTAKE = re.compile(r"\b(?:not\s+|in)correct(?:ly)?\b|\bcorrectly\b|\bwrong(?:ly)?\b|\bmake sure\b|\bensure\b"
                      r"|\bmistake|\b(?:is|are)\s+not\s+(?:properly\s+)?(?:specified|defined|declared|indexed|set)\b"
                      r"|\bnot\s+properly\b", re.IGNORECASE)
_STEP = re.compile(r"when\s+(?:defining|creating|declaring|writing|building|adding|setting\s+up)\b", re.IGNORECASE)
_BARE_STEP = re.compile(r"when\s+(?:the\s+program\s+(?:needs\s+to\s+)?)?(?:defin|creat|declar|writ|build|add|"
                        r"formulat|us|specif)(?:es|e|ies|y|s|ing)?\s+(?:the\s+|a\s+|an\s+|its\s+)?(?:pyomo\s+)?"
                        r"(?:model|(?:decision\s+)?variables?|objective(?:\s+function)?|constraints?|parameters?|"
                        r"program|code)\s*(?:[.;]|,.*)?\s*$", re.IGNORECASE)
_LESSON = re.compile(r"\b(?:the\s+lesson|that\s+correction)\b", re.IGNORECASE)
_QUOTED_PART = re.compile(r'"[^"]*"')
_OWN_NAME = re.compile(r"\bmodel\.\w+")


def unechoed(condition: str) -> str:
    """The condition without a last clause that echoes the question it answers ("When the problem
    asks for a count of its decisions, it calls for that correction.": the condition-writing
    prompts ask what "calls for that correction")."""
    head, comma, tail = condition.rpartition(",")
    return head.strip() if comma and head.strip() and _LESSON.search(tail) else condition


def vacuous(condition: str, stage: Stage) -> str | None:
    """What makes a condition say nothing about where its lesson applies, or None when nothing
    does: it names the mistake ("when the variable domains are not correctly specified": true only
    of a program already written wrong), it names a step every program takes ("when defining the
    variables"), it names the program's own components ("when the program declares
    `model.sunny_z1` continuous"), or, for a modeling lesson, it names a step of the program
    instead of what the problem says ("when defining the supply capacity parameter"). Quoted text
    is not read."""
    text = " ".join(_QUOTED_PART.sub('"..."', condition).split())
    if _MISTAKE.search(text):
        return "names the mistake, not the situation that calls for the lesson"
    if _LESSON.search(text):
        return "speaks of the lesson, not of the problem"
    if _OWN_NAME.search(text):
        return "names the program's own components, which no other problem has"
    if _BARE_STEP.match(text):
        return "names a step that every program takes"
    if stage != Stage.CODE_IMPLEMENTATION and _STEP.match(text):
        return "describes a step of the program, not what the problem says"
    return None


def _usable(condition: str, problem: str) -> bool:
    """Whether a condition for a known edit can be an insight's: it starts with "when", repeats
    no number of its problem and copies no instruction of the prompts."""
    return (condition.lower().startswith("when") and not specific(condition, problem)
            and not prompts.copies_instructions(condition))


_QUOTED = {"direction", "equality", "missing", "number"}  # edits of what the text states: quoted
_OPERATOR_CHANGE = re.compile(r"turned (<=|>=|==|<|>) into (<=|>=|<|>)")
_NUMBER_CHANGE = re.compile(r"wrote (\S+) where the program had (\S+)")
_SENSE = re.compile(r"\b(maximize|minimize)\b")


def _operators(contrast: Contrast) -> dict[str, str]:
    """A known edit's ``wrong`` and ``right`` operators (a constraint's), numbers, or senses
    (the objective's), for its lesson's explanation; the sense the example's right part names."""
    found = _OPERATOR_CHANGE.search(contrast.change)
    if found:
        return {"wrong": found.group(1), "right": found.group(2)}
    number = _NUMBER_CHANGE.search(contrast.change)
    if number:
        return {"wrong": number.group(2), "right": number.group(1)}
    sense = _SENSE.search(_right_part(contrast.example))
    return {"wrong": "", "right": sense.group(1) if sense else "the one the question asks for"}


def _right_part(example: str) -> str:
    """The code after "right:" in a ``wrong: ... right: ...`` example."""
    return example.split("right:", 1)[-1]


def unnumbered(condition: str, problem: str) -> str:
    """The condition with each number of two or more digits that its problem states (and a
    percent sign after it) replaced by "a stated number" (or "a stated percentage")."""
    numbers = _problem_numbers(problem)

    def mask(found: re.Match[str]) -> str:
        if found.group(1) not in numbers:
            return found.group(0)
        return "a stated percentage" if found.group(2) else "a stated number"

    return _NUMBER_PERCENT.sub(mask, condition)


_NUMBER_PERCENT = re.compile(r"(\d+(?:[.,]\d+)?)(\s*%)?")


def _problem_numbers(problem: str) -> set[str]:
    return {n for n in _NUMBER.findall(problem) if len(n.replace(".", "").replace(",", "")) >= 2}


def specific(condition: str, problem: str) -> bool:
    """True when the condition repeats a number (of two or more digits) from the problem text."""
    numbers = _problem_numbers(problem)
    return any(n in numbers for n in _NUMBER.findall(condition))


def _informative(example: str) -> bool:
    """False for an example with no content: its 'wrong' and 'right' parts empty, dots or equal."""
    parts = re.split(r"\b(?:wrong|right)\s*:", example, flags=re.IGNORECASE)
    if len(parts) != 3:
        return bool(example.strip(" .…"))
    wrong, right = (" ".join(p.split()).strip(" ,;.…") for p in parts[1:])
    return bool(wrong) and bool(right) and wrong != right


def diff_example(wrong: str, right: str, *, max_lines: int = 3, max_chars: int = 400) -> str:
    """'wrong: <lines only in the wrong program> right: <lines only in the right one>', from a line diff."""
    removed, added = [], []
    for line in difflib.ndiff(wrong.splitlines(), right.splitlines()):
        text = line[2:].strip()
        if not text or text.startswith("#"):
            continue
        if line.startswith("- "):
            removed.append(text)
        elif line.startswith("+ "):
            added.append(text)
    if not added:
        return ""
    example = f"wrong: {'; '.join(removed[:max_lines]) or '(missing)'} right: {'; '.join(added[:max_lines])}"
    return example[:max_chars]


def _lenient(text: str) -> _Drafts | None:
    """Parse drafts from a reply that wrapped its JSON in prose or a code fence."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        return _Drafts.model_validate_json(text[start : end + 1])
    except ValidationError:
        return None
