"""The experience library: insights with provenance and versions, their index and retrieval.

A leaf package: it never imports ``alphaopt``.
"""
