"""Measurement scripts: accuracy runs, honesty checks, reports, sandbox overhead."""
