"""PostgreSQL: tables, migrations, the write-side stores on SQLAlchemy and the lean read paths on asyncpg."""
