"""The insight taxonomy: stages, canonical label forms, and the hand-written seed labels.

A label sits at ``stage / level1 / level2``. Labels are matched by their canonical form, so
"Flow Conservation", "flow_conservation" and " flow  conservation " are one label.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from library.errors import InvalidInsightError


class Stage(StrEnum):
    """Where in the pipeline an insight applies."""

    DOMAIN_MODELING = "domain_modeling"
    GENERAL_FORMULATION = "general_formulation"
    CODE_IMPLEMENTATION = "code_implementation"


_SEPARATORS = re.compile(r"[\s_\-]+")


def canonical(text: str) -> str:
    """The canonical form of a label: lowercase, ``_``/``-`` as space, whitespace collapsed, trimmed.

    Args:
        text: A label as a person or a model wrote it.

    Returns:
        The form labels are stored and matched by.

    Raises:
        InvalidInsightError: Nothing is left of ``text`` after canonicalisation.
    """
    form = _SEPARATORS.sub(" ", text).strip().lower()
    if not form:
        raise InvalidInsightError(f"label {text!r} is empty; give a short noun phrase such as 'capacity limits'")
    return form


def parse_stage(stage: str) -> Stage:
    """The :class:`Stage` named by ``stage``, accepting any spelling whose canonical form matches."""
    form = canonical(stage).replace(" ", "_")
    try:
        return Stage(form)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in Stage)
        raise InvalidInsightError(f"unknown stage {stage!r}; use one of {choices}") from None


class LabelKey(NamedTuple):
    """The canonical identity of a label."""

    stage: Stage
    level1: str
    level2: str

    @classmethod
    def of(cls, stage: str, level1: str, level2: str) -> LabelKey:
        """Canonicalise the three parts of a label."""
        return cls(parse_stage(stage), canonical(level1), canonical(level2))

    @property
    def path(self) -> str:
        """``stage/level1/level2``, the form the index filters by."""
        return f"{self.stage.value}/{self.level1}/{self.level2}"


class SeedLabel(NamedTuple):
    """One hand-written label: its place, display name and definition."""

    stage: Stage
    level1: str
    level2: str
    display: str
    definition: str


_D, _G, _C = Stage.DOMAIN_MODELING, Stage.GENERAL_FORMULATION, Stage.CODE_IMPLEMENTATION

SEED_LABELS: tuple[SeedLabel, ...] = (
    SeedLabel(_D, "resource allocation", "capacity limits", "Capacity limits",
              "Shared resources (machine hours, labour, budget, land) cap what the activities may consume."),
    SeedLabel(_D, "resource allocation", "demand satisfaction", "Demand satisfaction",
              "Required, minimum or maximum amounts to deliver, and whether unmet demand is allowed."),
    SeedLabel(_D, "production planning", "multi period inventory", "Multi-period inventory",
              "Stock carried between periods links production, demand and holding across time."),
    SeedLabel(_D, "network flow", "flow conservation", "Flow conservation",
              "Flow into a node equals flow out of it, plus supply or minus demand at that node."),
    SeedLabel(_D, "scheduling", "staffing and shifts", "Staffing and shifts",
              "Workers or shifts covering time periods, with coverage requirements and overlaps."),
    SeedLabel(_G, "variables", "integrality", "Integrality",
              "Whether a quantity must be a whole number (integer) or a yes/no choice (binary)."),
    SeedLabel(_G, "variables", "bounds and sign", "Bounds and sign",
              "Lower and upper bounds on variables, including non-negativity and fixed values."),
    SeedLabel(_G, "constraints", "ratio or percentage constraints", "Ratio or percentage constraints",
              "Shares, percentages and ratios between quantities, written linearly (x >= p * total)."),
    SeedLabel(_G, "constraints", "logical conditions", "Logical conditions",
              "If-then, either-or and fixed-charge relations, usually via binary variables and big-M."),
    SeedLabel(_G, "constraints", "inequality direction", "Inequality direction",
              "Reading 'at least', 'at most', 'no more than' and 'exceeds' as the right inequality."),
    SeedLabel(_G, "objective", "objective sense and terms", "Objective sense and terms",
              "Maximise or minimise, and which revenues, costs or penalties the objective includes."),
    SeedLabel(_C, "pyomo api", "indexing", "Indexing",
              "Sets, indexed Var/Param/Constraint components and rule functions over index sets."),
    SeedLabel(_C, "pyomo api", "variable domains", "Variable domains",
              "Pyomo domains such as NonNegativeReals, NonNegativeIntegers and Binary, and bounds=."),
    SeedLabel(_C, "pyomo api", "expressions and summation", "Expressions and summation",
              "Building linear expressions with sum(), quicksum and Param values without Python branching on Vars."),
    SeedLabel(_C, "solver interface", "solution extraction", "Solution extraction",
              "Reading the objective and variable values, with pyo.value(), after checking termination."),
    SeedLabel(_C, "data handling", "units and scaling", "Units and scaling",
              "Converting units and percentages consistently before they enter coefficients."),
)
