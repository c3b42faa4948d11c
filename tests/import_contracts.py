"""An import-linter contract type for code that may use the standard library and nothing else (pyproject.toml).

import-linter's own contracts forbid modules by name, and "everything outside the standard library" is no list
anyone can write down: this contract allows instead. Each module of a source package may import the package's own
modules and the modules of ``sys.stdlib_module_names``; anything else breaks it, a dependency added tomorrow too.
"""

from __future__ import annotations

import sys
from typing import cast

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output
from importlinter.domain.imports import Module


class StandardLibraryOnlyContract(Contract):
    """``source_modules`` may import the standard library, their own modules and ``allowed_modules`` (and below)."""

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.ModuleField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        violations = []
        allowed: set[str] = set()
        for module in self._modules("allowed_modules"):
            allowed |= {module.name} | graph.find_descendants(module.name)
        for source in self._modules("source_modules"):
            own = {source.name} | graph.find_descendants(source.name)
            for importer in sorted(own):
                for imported in sorted(graph.find_modules_directly_imported_by(importer) - own - allowed):
                    if imported.partition(".")[0] not in sys.stdlib_module_names:
                        details = graph.get_import_details(importer=importer, imported=imported)
                        lines = ", ".join(str(detail["line_number"]) for detail in details)
                        violations.append(f"{importer} imports {imported} (l. {lines})")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def _modules(self, field: str) -> list[Module]:
        """The modules of ``field``: import-linter sets each field's parsed value (None if left out) on the instance."""
        return cast("list[Module]", getattr(self, field) or [])

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            output.print_error(violation, bold=False)
