"""The ASGI apps the benchmarks serve: smoke itself, the bare asyncpg baseline and the FastAPI + ORM twin."""
