"""smoke's reference agent (docs/api.md's agent protocol): ``reference.py``, one standard-library file, shipped as is.

Nothing here imports smoke, and smoke reads ``reference.py`` as data (the user data carries its bytes), so what a
server runs is exactly this file.
"""
