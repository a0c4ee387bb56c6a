"""Network definitions, one file per network; each file registers itself on import.

Explicit import list (no directory scan).
"""
