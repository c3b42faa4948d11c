"""``python -m smoke``: the same as the ``smoke`` command."""

from smoke.cli import main

raise SystemExit(main())
