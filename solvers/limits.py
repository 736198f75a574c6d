"""Resource limits applied to every program run."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Limits(BaseModel):
    """Per-program limits.

    ``memory_mb`` caps the address space (RLIMIT_AS) of the process that runs
    the program, which already holds the preloaded interpreter, Pyomo and HiGHS
    (about 250 MB), so values below ~400 leave little room for the model.
    ``file_size_mb`` caps any single file the program writes, including its
    captured stdout/stderr; ``output_chars`` is how much of that output (plus the
    solver log) is returned in ``SolveResult.log_tail``.
    """

    wall_time_s: float = Field(30.0, gt=0)
    cpu_time_s: float = Field(30.0, gt=0)
    memory_mb: int = Field(2048, gt=0)
    file_size_mb: int = Field(16, gt=0)
    max_processes: int = Field(64, gt=0)
    output_chars: int = Field(4000, ge=0)
