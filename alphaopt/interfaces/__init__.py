"""The interfaces: the command line (``cli``, ``cli_library``), JSONL batches (``batch``), the
helpers the Streamlit app calls (``app_api``) and text output (``render``). Nothing below imports
them."""
