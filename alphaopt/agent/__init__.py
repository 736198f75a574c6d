"""The agent: a LangGraph graph (``graph``, ``nodes``, typed ``state``) that retrieves insights,
writes a Pyomo program, runs it in the sandbox, repairs or diagnoses it and answers. ``run``
holds the ``Agent`` that the API, the learner and the interfaces build on. Imports ``llm``,
``library`` and ``solvers``, never ``learning`` or ``interfaces``."""
