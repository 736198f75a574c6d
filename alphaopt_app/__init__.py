"""The Streamlit app's pages and helpers (run with: streamlit run app.py). Only calls alphaopt's API."""
