"""The LLM layer: one OpenAI-protocol client that logs every call (``client``), the call log
and saved runs (``runlog``), and the embedded local model (``embedded``, ``local_model``,
``model_fetch``). Imports only ``alphaopt.config`` and ``alphaopt.errors`` from above it."""
