"""Every prompt alphaopt sends, one constant per LLM step, named after its node.

All steps share ``SYSTEM`` and open their user message with the problem text, so a local
model's prompt cache reuses that prefix from one call to the next. Inserted text is wrapped in
tags. ``render`` returns the messages plus the template hash that the call log records.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from alphaopt.agent.reading import Reading

SYSTEM = """You are an expert in operations research and Pyomo. You turn optimization problems into correct models: linear or mixed-integer where the problem is linear, nonlinear where it is nonlinear.

Pyomo program rules:
- Start with `import pyomo.environ as pyo`.
- Define `def build_model():` that creates `model = pyo.ConcreteModel()`, adds everything, and ends with `return model`.
- Write the numbers from the problem directly in the expressions.
- Variables: `pyo.Var(domain=pyo.NonNegativeReals)`; use `pyo.NonNegativeIntegers` for countable items and `pyo.Binary` for yes/no choices.
- With a table or more than 4 similar items, put the data in Python lists or dicts and use indexes and loops: `model.x = pyo.Var(range(n), domain=...)`, `sum(c[i] * model.x[i] for i in range(n))`. Never declare x1, x2, x3, ... one by one.
- Exactly one objective, the quantity the question asks for: `model.obj = pyo.Objective(expr=..., sense=pyo.maximize)` (or `pyo.minimize`). When it asks for a number of things ("minimize the total number of units"), the objective adds up those variables, not their costs or resources.
- Constraints: `model.c1 = pyo.Constraint(expr=... <= ...)`; for many, `model.cons = pyo.ConstraintList()` and `model.cons.add(...)`.
- Directions: "at least", "minimum", "no less than" mean >=; "at most", "no more than", "up to", "maximum", "available", "budget", "capacity" mean <=.
- Shares and ratios relate variables: "at most 40% of all units are of type A" is `model.a <= 0.4 * (model.a + model.b)`; "A must be at least twice B" is `model.a >= 2 * model.b`.
- Keep a linear problem linear. Where the problem itself is nonlinear (a price and a quantity both decided, a ratio of two decisions, a square), write that term as it is, such as `model.p * model.q` or `model.a / model.b`: the solver handles nonlinear and mixed-integer nonlinear models.
- Python `if`, `min()` and `max()` cannot test a variable: use a binary variable and constraints.
- Never solve, never print, never use SolverFactory.

Example problem: "A farm has 50 acres for wheat and corn, and at least 10 acres must be wheat. An acre of wheat earns $200 and an acre of corn $300. How many acres of each maximize the profit?"
Its program:
```python
import pyomo.environ as pyo

def build_model():
    model = pyo.ConcreteModel()
    # Variables
    model.wheat = pyo.Var(domain=pyo.NonNegativeReals)  # acres of wheat
    model.corn = pyo.Var(domain=pyo.NonNegativeReals)  # acres of corn
    # Objective
    model.obj = pyo.Objective(expr=200 * model.wheat + 300 * model.corn, sense=pyo.maximize)
    # Constraints
    model.land = pyo.Constraint(expr=model.wheat + model.corn <= 50)
    model.min_wheat = pyo.Constraint(expr=model.wheat >= 10)
    return model
```"""

#: The quote rule (``ExperimentalSettings.quote_max_words``): a comment quoting the problem's words
#: above the objective and each constraint, and the example written that way. Off by default
#: (benchmarks/README.md has the measurement); on long problems the quoted programs grow too long.
QUOTE_RULE = ("- Above the objective and each constraint, write a comment that quotes the words of the problem "
              "it comes from. Write no constraint that the problem does not state.\n")
_QUOTED_EXAMPLE = (
    ("    # Objective\n", '    # "maximize the profit": "An acre of wheat earns $200 and an acre of corn $300"\n'),
    ("    # Constraints\n    model.land", '    # "A farm has 50 acres for wheat and corn"\n    model.land'),
    ("    model.min_wheat", '    # "at least 10 acres must be wheat"\n    model.min_wheat'),
)


def _quoting(system: str) -> str:
    """``system`` with the quote rule before the linearity rule and the example quoting the text."""
    rule_at = system.index("- Keep a linear problem linear")
    quoted = system[:rule_at] + QUOTE_RULE + system[rule_at:]
    for plain, with_quote in _QUOTED_EXAMPLE:
        if quoted.count(plain) != 1:  # the example changed: the quote rule must follow it
            raise ValueError(f"the system prompt's example no longer has exactly one {plain.strip()!r}")
        quoted = quoted.replace(plain, with_quote)
    return quoted


SYSTEM_QUOTE = _quoting(SYSTEM)


def quotes(words: int, max_words: int) -> bool:
    """Whether a problem of ``words`` words gets the quote rule: it has at most ``max_words``
    (0: none does)."""
    return 0 < words <= max_words


PROBLEM = "<problem>\n{problem}\n</problem>\n"

INSIGHTS = "\nLessons that apply to this problem (cite their ids in a comment if you use them):\n<insights>\n{insights}\n</insights>\n"

FORMULATE = PROBLEM + """{insights}
Write the mathematical model of this problem, short and precise, in this format:
## Variables
one line each: name, meaning, domain (continuous >= 0, integer >= 0 or binary)
## Objective
maximize or minimize: the expression
## Constraints
one line each: a name and the inequality, using the numbers from the problem
Do not write code."""

GOAL = """The question: "{goal}"
The objective must compute exactly the quantity this question asks to maximize or minimize.
"""

CONFLICT = """These constraints cannot all hold together, so at least one of them is wrong:
{constraints}
"""

UNBOUNDED_VARIABLES = """These variables can grow without limit: {variables}
"""

FORMULATION = "<formulation>\n{formulation}\n</formulation>\n"

WRITE_PROGRAM = PROBLEM + """{insights}
{formulation}{goal}
Write the Pyomo program for this problem, following the rules. Answer with one ```python block only."""

REPAIR = PROBLEM + """
This program failed:
```python
{program}
```
<error>
{error}
</error>

Fix the error. Answer with the complete corrected program in one ```python block only."""

DIAGNOSE = PROBLEM + """
<formulation>
{formulation}
</formulation>
The solver says the model is {status}. {hint}
{conflict}Check each constraint against the problem text: a wrong direction (<= vs >=), a wrong number, a missing or extra constraint, or a wrong objective sense.
If the model already matches the text exactly (the problem itself is {status}), answer only: CONFIRMED.
Otherwise write the corrected mathematical model in the same format (## Variables, ## Objective, ## Constraints). Do not write code."""

DIAGNOSE_PROGRAM = PROBLEM + """
This program:
```python
{program}
```
builds a model that the solver says is {status}. {hint}
{conflict}{goal}Check the objective and every constraint against the problem text: the direction ("at least" is >=, "at most" is <=), each number, a missing or extra constraint, integrality, the objective's sense and quantity.
Write the corrected complete program. Answer with one ```python block only."""

PATCH_UNUSED = PROBLEM + """
This program:
```python
{program}
```
never uses this part of the problem: "{phrase}" (the number {number}).
Write the one line of Pyomo that says it with the program's variables: a new constraint `model.<new_name> = pyo.Constraint(expr=...)`, or, if a line of the program means it but has it wrong, that line corrected under the same name. Answer with that line in one ```python block only."""

PATCH_OBJECTIVE = PROBLEM + """
This program:
```python
{program}
```
minimizes `{objective}`, but the question asks to {goal}: the count of those things themselves, not their capacity, cost or another weight.
Write the one objective line `model.obj = pyo.Objective(expr=..., sense=pyo.minimize)` that adds up the variables of the things counted. Answer with that line in one ```python block only."""

REVIEW_INSIGHT = PROBLEM + """
This program:
```python
{program}
```
A lesson learned from similar problems:
{insight}
If the lesson does not fit this problem, or the program already follows it, answer only: OK.
Otherwise write the one line of the program that goes against the lesson, corrected under the same name (`model.<name> = pyo.Objective(...)`, `pyo.Constraint(...)` or `pyo.Var(...)`), in one ```python block only."""

REWRITE_SHORTER = PROBLEM + """{insights}
Your first program for this problem was cut off at the length limit, unfinished, because it wrote every item on its own line.
{goal}Write a shorter complete program: put the problem's data in Python lists or dicts and build the variables, objective and constraints with indexes and loops. Answer with one ```python block only."""

#: Hints added to a Python/Pyomo error shown to the repair step: (pattern in the error, hint).
REPAIR_HINTS: tuple[tuple[str, str], ...] = (
    (r"'(Scalar|Indexed)Constraint'",
     "A constraint is a condition, not a quantity: where you need the amount, write its expression again "
     "(or keep it in a Python variable), never the constraint's name."),
    (r"Index '.*' is not valid for indexed component",
     "Use the index values the component was declared with: `pyo.Var(range(n))` has indexes 0 to n-1, "
     "and a variable over two sets is written `model.x[i, j]`, not `model.x[i][j]`."),
    (r"Cannot convert non-constant Pyomo expression",
     "Python `if`, `and`, `or`, `min()` and `max()` cannot test a variable's value: write constraints "
     "instead, with a binary variable for a yes/no choice."),
    (r"expected 'else' after 'if' expression",
     "In a sum, a condition goes after the loop: `sum(c[i] * model.x[i] for i in items if i != k)`."),
    (r"NameError: name '(?P<name>\w+)' is not defined",
     "Define `{name}` before using it: write the problem's data as Python lists or dicts at the start of "
     "build_model()."),
    (r"object has no attribute '(?P<attr>\w+)'",
     "Declare `model.{attr}` (with its data) before the first line that uses it, or use the name that "
     "was declared."),
    (r"was never closed|unexpected EOF",
     "The program is unfinished: write it complete, and shorter, with the data in lists and loops."),
)


def repair_hints(error: str) -> str:
    """The hints whose pattern occurs in the error, one per line (empty when none does)."""
    hints = []
    for pattern, hint in REPAIR_HINTS:
        found = re.search(pattern, error)
        if found:
            hints.append("Hint: " + hint.format(**found.groupdict()))
    return "\n".join(hints)


CONFIRMED = "CONFIRMED"

DIAGNOSE_HINTS = {
    "infeasible": "No plan satisfies all constraints, but the problem surely has a feasible plan.",
    "unbounded": "The objective can improve forever, so a limit from the problem is missing.",
    "infeasible_or_unbounded": "It is either infeasible or unbounded, which the real problem is not.",
    "implausible": "The optimal plan does nothing (every variable is 0), which is not a sensible answer here.",
    "constant_objective": "Its objective depends on no decision variable: every plan gives the same value, so nothing "
                          "is optimized. The objective must compute the quantity the question asks for from the "
                          "decision variables.",
}

#: How a diagnosis reason reads in "the solver says the model is {status}" (else its name, spaced).
DIAGNOSE_STATUS = {"constant_objective": "feasible, but its objective is a constant"}


def status_words(reason: str) -> str:
    """A diagnosis reason as the diagnose prompts say it."""
    return DIAGNOSE_STATUS.get(reason, reason.replace("_", " "))


CHECK_INSIGHTS = PROBLEM + """
Lessons learned from other problems:
<lessons>
{candidates}
</lessons>
Which lessons apply to this problem? Answer with their ids separated by commas, or NONE."""

EXPLORE = PROBLEM + """
This program:
```python
{program}
```
gives {outcome}. The correct optimal objective value is {target}.
Find the modeling mistake (a wrong direction, a wrong number, a missing or extra constraint, wrong integrality, a wrong objective) and write the corrected program; change only what is wrong. The solver must compute the value: never write the number {target} in the program.
Answer with one ```python block only."""

EXTRACT = PROBLEM + """
This first program was wrong ({outcome}):
```python
{wrong}
```
This corrected program is right:
```python
{right}
```
The lines that differ, which hold the mistake: {diff}
Write 1 or 2 lessons that would have avoided the mistake on similar problems. Answer with JSON only, {{"insights": [lesson, ...]}}, each lesson an object with these keys:
- "stage": "domain_modeling", "general_formulation" or "code_implementation"
- "level1" and "level2": a category and subcategory from the list below
- "condition": when the lesson applies, in general words that fit other problems (no numbers, names or products from this one), starting with "when"
- "explanation": what to do, the common mistake, and why
- "example": the wrong line and the right line, as "wrong: <code> right: <code>"
Categories (stage / level1 / level2):
{labels}"""

EXTRACT_CODE = PROBLEM + """
This program failed:
<error>
{error}
</error>
The repaired program ran:
```python
{right}
```
Write 1 lesson about writing Pyomo code that avoids this error. Answer with JSON only, {{"insights": [lesson]}}, the lesson an object with these keys:
- "stage": "code_implementation"
- "level1" and "level2": a category and subcategory from the list below
- "condition": when the program needs it, in general words, starting with "when"
- "explanation": what to do, the common mistake, and why
- "example": the failing line and the fixed line, as "wrong: <code> right: <code>"
Categories (level1 / level2):
{labels}"""

INTEGRALITY_CONDITION = PROBLEM + """
The first program for this problem was wrong. It became right when the correction {change}, with nothing else changed.
When should a program use that kind of variables? Describe the kind of problem, in general words that fit other problems like this one (no numbers or names from it): what is counted, bought or chosen. Answer with the condition only, one sentence starting with "when"."""

EDIT_CONDITION = PROBLEM + """
The first program for this problem was wrong. It became right with one correction, nothing else changed: it {change}.
{example}
What in problems like this one calls for that correction? Describe the kind of requirement, limit or goal and how the text words it, in general words that fit other problems like this one (no numbers or names from it). Answer with the condition only, one sentence starting with "when"."""

#: The lesson of a known one-line edit (``alphaopt.learning.variants.known_edit``), by its kind:
#: ``(level1, level2, explanation)``, the label ``None`` where the nearest label is taken;
#: ``{wrong}`` and ``{right}`` are the edit's operators (or the objective's senses, or the numbers).
#: The edit itself is the insight's example; the model writes at most the condition
#: (``EDIT_CONDITION``).
EDIT_LESSONS: dict[str, tuple[str | None, str | None, str]] = {
    "direction": ("constraints", "inequality direction",
                  "write it with {right}, not {wrong}, as in the example; the common mistake is the reversed "
                  "direction, which allows plans the text forbids or forbids plans it allows"),
    "equality": ("constraints", "inequality direction",
                 "write it as an inequality ({right}), not an equality (==), as in the example: the text sets a "
                 "bound, not an exact amount, and an equality removes plans that meet the bound with room to spare"),
    "sense": ("objective", "objective sense and terms",
              "set the objective's sense to {right}, as in the example; the common mistake is the opposite sense, "
              "which drives the plan to the wrong extreme"),
    "count": ("objective", "objective sense and terms",
              "make the objective the plain count of these things, every one weighing 1, as in the example; the "
              "common mistake is weighting each by its size, cost or value, which optimizes that quantity instead "
              "of how many"),
    "number": (None, None,
               "write the number the text states, {right}, where the example does; the common mistake is another "
               "number (one worked out from the text, or one it states for something else), which changes what "
               "the plan may do"),
    "missing": (None, None,
                "write this limit as a constraint of its own, as in the example; the common mistake is leaving out a "
                "limit the text states, which lets the plan break it"),
    "drop": (None, None,
             "leave such a constraint out, as in the example: the text does not ask for it, and an extra "
             "constraint cuts off the best plan"),
}

SITUATE = PROBLEM + """
A lesson was learned from this problem, but its condition {flaw}, so it cannot tell which problems need the lesson.
<lesson>{explanation}</lesson>
When does the lesson apply? Describe {what}, in general words that fit other problems like this one (no numbers or names from it). Answer with the condition only, one sentence starting with "{start}"."""

#: The ``{what}`` and ``{start}`` of ``SITUATE``: a modeling lesson applies where the text says
#: something, a code lesson where the program must express something. The flawed condition itself
#: is not shown: a small model given it writes it back.
SITUATE_WHAT = {
    "modeling": {"what": "what the text of problems like this one says or asks for that calls for it",
                 "start": "when the problem"},
    "code": {"what": "what a program for problems like this one must express that calls for it (a kind of data, "
                     "index, constraint or expression)", "start": "when the program"},
}

GENERALIZE = """This lesson was learned from one problem, and its condition names that problem's details:
<condition>{condition}</condition>
<lesson>{explanation}</lesson>
Rewrite the condition so that it fits every problem of the same kind: the situation in general words, with no numbers, names, places or products. Answer with the condition only, one sentence starting with "when"."""

NARROW = PROBLEM + """
A lesson learned from other problems was applied to this problem, where it does not fit: the answer was wrong with the lesson and right without it.
<condition>{condition}</condition>
<lesson>{explanation}</lesson>
Rewrite the condition so that it still covers the problems it was learned from and leaves out problems like this one: add "but not when ..." in general words, with no numbers, names or products. Answer with the condition only, one sentence starting with "when"."""

MERGE = """These lessons say nearly the same thing:
<lessons>
{lessons}
</lessons>
Write one lesson that covers all of them, as JSON:
{{"stage": "{stage}", "level1": "{level1}", "level2": "{level2}", "condition": "...", "explanation": "...", "example": "..."}}"""

EVOLVE_CONDITION = PROBLEM + """
A lesson learned from other problems:
<condition>{condition}</condition>
<lesson>{explanation}</lesson>
The lesson helps on problems like the one above.{avoid}
Rewrite the condition so that it says when the lesson applies: it must cover problems like the one above{avoid_clause}, in general words, with no numbers, names or products. Answer with the condition only, one sentence starting with "when"."""

#: The ``{avoid}`` part of ``EVOLVE_CONDITION`` when the lesson misled a problem (its
#: ``{avoid_clause}`` is then ``AVOID_CLAUSE``; both are empty otherwise).
AVOID = """
It misled this other problem, where the answer was wrong with the lesson and right without it:
<other_problem>
{problem}
</other_problem>"""
AVOID_CLAUSE = " and leave out problems like the other one"

EVOLVE_LABEL = PROBLEM + """
A lesson that helps on problems like the one above:
<condition>{condition}</condition>
<lesson>{explanation}</lesson>
None of these categories fits it:
{labels}
Name a new category for it, as JSON only: {{"level1": "<a broad category, two or three words>", "level2": "<a narrower category, two to four words>", "definition": "<one sentence: which problems and which modelling decision the category covers, in general words>"}}"""

# The placebo lesson of the learner's counterfactual check: in the form of a learned insight, it
# only restates what the prompts already ask. A candidate must beat it as well as the run
# without it: with one sample each, any change to the prompt can turn a slip (a typo, a dropped
# line) into a right answer, and that lift is not the candidate's.
PLACEBO = {
    "id": "I0000", "version": 1, "label": "placebo / placebo",
    "condition": "when the problem is written in plain language",
    "explanation": "state each decision, the objective and every limit the text gives, then write each of them "
                   "in the program",
    "example": "",
}

PROMPTS: dict[str, str] = {
    "formulate": FORMULATE,
    "write_program": WRITE_PROGRAM,
    "repair": REPAIR,
    "diagnose": DIAGNOSE,
    "diagnose_program": DIAGNOSE_PROGRAM,
    "patch_unused": PATCH_UNUSED,
    "patch_objective": PATCH_OBJECTIVE,
    "review_insight": REVIEW_INSIGHT,
    "rewrite_shorter": REWRITE_SHORTER,
    "check_insights": CHECK_INSIGHTS,
    "explore": EXPLORE,
    "extract": EXTRACT,
    "extract_code": EXTRACT_CODE,
    "integrality_condition": INTEGRALITY_CONDITION,
    "edit_condition": EDIT_CONDITION,
    "generalize": GENERALIZE,
    "situate": SITUATE,
    "narrow": NARROW,
    "merge": MERGE,
    "evolve_condition": EVOLVE_CONDITION,
    "evolve_label": EVOLVE_LABEL,
}


_WORD = re.compile(r"[a-z0-9_.=]+")


@functools.lru_cache(maxsize=1)
def _instruction_runs(words: int) -> frozenset[tuple[str, ...]]:
    """Every run of ``words`` words in the prompts' own fixed text (placeholders left out)."""
    runs: set[tuple[str, ...]] = set()
    for template in (SYSTEM, *PROMPTS.values()):
        tokens = _WORD.findall(re.sub(r"\{\w+\}", " ", template).lower())
        runs.update(tuple(tokens[i:i + words]) for i in range(len(tokens) - words + 1))
    return frozenset(runs)


def copies_instructions(text: str, *, words: int = 8) -> bool:
    """Whether ``text`` repeats ``words`` words in a row of the prompts' own instructions. A small
    model drafting a lesson sometimes copies a rule it was shown; such a lesson says nothing the
    prompts do not already say, and its condition says nothing about where it applies."""
    tokens = _WORD.findall(text.lower())
    runs = _instruction_runs(words)
    return any(tuple(tokens[i:i + words]) in runs for i in range(len(tokens) - words + 1))


def format_insights(insights: Sequence[Mapping[str, Any]]) -> str:
    """The one formatter for insights in prompts: ``[id] When <condition>: <explanation>``, then
    its example (wrong vs right) on the next line when it has one."""
    return "\n".join(
        f"[{i['id']}] {_when(i['condition'])}: {i['explanation'].strip()}"
        + (f"\n  Example: {i['example'].strip()}" if (i.get("example") or "").strip() else "")
        for i in insights
    )


def goal_block(reading: Reading) -> str:
    """The question, repeated next to the instruction so that the objective is the quantity it
    asks for; nothing when the problem has no recognisable goal sentence."""
    return GOAL.format(goal=reading.goal) if reading.goal else ""


def no_optimum_block(result: Mapping[str, Any]) -> str:
    """What the solver found about a model with no optimum: for an infeasible one the constraints
    that cannot hold together (``name: text`` per line), for an unbounded one the variables that
    grow without limit; nothing when it found neither."""
    if result.get("conflict"):
        return CONFLICT.format(constraints="\n".join(f"- {c['name']}: {c['text']}" for c in result["conflict"]))
    if result.get("unbounded"):
        return UNBOUNDED_VARIABLES.format(variables=", ".join(result["unbounded"]))
    return ""


def formulation_block(formulation: str) -> str:
    """The formulation section of the program prompt, or nothing when none was written."""
    return FORMULATION.format(formulation=formulation.strip()) if formulation.strip() else ""


def prompt_sha(name: str, *, quote: bool = False) -> str:
    """Short hash of a template (and the system prompt it goes with), recorded with every call."""
    template = PROMPTS[name]
    parts = (("{goal}", GOAL), ("{formulation}", FORMULATION), ("{conflict}", CONFLICT + UNBOUNDED_VARIABLES))
    blocks = [block for key, block in parts if key in template]
    if name == "repair":
        blocks.append(repr(REPAIR_HINTS))
    if name in ("diagnose", "diagnose_program"):
        blocks.append(repr((DIAGNOSE_HINTS, DIAGNOSE_STATUS)))
    system = SYSTEM_QUOTE if quote else SYSTEM
    return hashlib.sha256("\x00".join([system, template, *blocks]).encode()).hexdigest()[:12]


def render(name: str, *, quote: bool = False, **kwargs: Any) -> tuple[list[dict[str, str]], str]:
    """Render the named step's messages, with the quote rule in the system prompt when ``quote``;
    returns ``(messages, prompt_sha)``."""
    user = PROMPTS[name].format(**kwargs)
    system = SYSTEM_QUOTE if quote else SYSTEM
    return [{"role": "system", "content": system}, {"role": "user", "content": user}], prompt_sha(name, quote=quote)


def _when(condition: str) -> str:
    """A condition as a clause starting with "When" (learned ones often start with it already)."""
    text = condition.strip().rstrip(".")
    return "When " + text[5:] if text.lower().startswith("when ") else "When " + text


def insights_block(insights: Sequence[Mapping[str, Any]]) -> str:
    """The insights section, or nothing when there are none."""
    return INSIGHTS.format(insights=format_insights(insights)) if insights else ""
