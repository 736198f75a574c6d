"""Run with: streamlit run app.py

The alphaopt app: solve problems and watch each step, browse and curate the experience library,
start learning runs and follow them. Pages live in ``alphaopt_app/``; they only call alphaopt's
Python API (``alphaopt.api``, ``alphaopt.interfaces.app_api``, ``library.LibraryStore``). Settings come from
``ALPHAOPT_*`` variables and ``$ALPHAOPT_HOME/settings.toml``, as for the CLI.
"""

from __future__ import annotations

import streamlit as st

from alphaopt_app import services

st.set_page_config(page_title="alphaopt", page_icon=":material/functions:", layout="wide")
services.keep_input()
services.sidebar(services.settings())
page = st.navigation([
    st.Page("alphaopt_app/solve_page.py", title="Solve", icon=":material/calculate:", default=True),
    st.Page("alphaopt_app/library_page.py", title="Library", icon=":material/menu_book:"),
    st.Page("alphaopt_app/learn_page.py", title="Learn", icon=":material/monitoring:"),
])
page.run()
