"""Resource limits applied to every program run."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Limits(BaseModel):
    """Per-run limits.

    ``memory_mb`` caps the address space (RLIMIT_AS) of each process of the run, which already
    holds the preloaded interpreter, Pyomo and the solvers, so values below ~400 leave little
    room for the model. Where a cgroup is available (``SolveResult.isolation`` says), it also
    caps the memory of all the run's processes together, above what the warm worker holds;
    likewise ``max_processes`` (RLIMIT_NPROC, and the cgroup's task count) and ``cpus`` (cgroup
    only). ``file_size_mb`` caps any single file the program writes, including its captured
    output and the exported model; ``output_chars`` is how much of that output (plus the
    solver log) is returned in ``SolveResult.log_tail``. ``mip_gap`` is the relative gap at
    which every solver may stop and call a plan optimal.
    """

    wall_time_s: float = Field(default=30.0, gt=0)
    cpu_time_s: float = Field(default=30.0, gt=0)
    memory_mb: int = Field(default=2048, gt=0)
    file_size_mb: int = Field(default=16, gt=0)
    max_processes: int = Field(default=64, gt=0)
    output_chars: int = Field(default=4000, ge=0)
    mip_gap: float = Field(default=1e-4, ge=0)
    cpus: float = Field(default=1.0, gt=0)
