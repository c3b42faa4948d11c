"""smoke's reference agent (SPEC §10): ``reference.py`` is one standard-library file, shipped to agent VPSes as is.

Nothing here imports smoke, and smoke reads ``reference.py`` as data (the user data carries its bytes), so what a
server runs is exactly this file.
"""
