"""The catalog file: TOML in, a CatalogSpec out, or every problem on a line of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoke.catalog_file import CatalogFileError, load_catalog
from smoke.domain.catalog import SEEDED_CATALOG, CatalogSpec
from smoke.domain.models import AgentKind, LlmBackend, Manifest
from smoke.settings import Settings, SettingsError

EXAMPLE = Path(__file__).parents[2] / "catalog.example.toml"
MINIMAL = """
[regions.eu]
location = "fsn1"
[tiers.tiny]
server_type = "cx22"
[manifests.platform]
image = 123456789
agent = "image"
agent_port = 9090
"""


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> CatalogSpec:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    return load_catalog(path, environ or {})


def _problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(CatalogFileError) as caught:
        _load(tmp_path, text, environ)
    return caught.value.problems


def test_the_example_file_is_the_built_in_catalog() -> None:
    assert load_catalog(EXAMPLE, {}) == SEEDED_CATALOG


def test_a_catalog_of_the_platforms_own_image_region_and_tier(tmp_path: Path) -> None:
    catalog = _load(tmp_path, MINIMAL)

    assert catalog == CatalogSpec(
        manifests={"platform": Manifest("platform", "123456789", AgentKind.IMAGE, 9090)},
        regions={"eu": "fsn1"},
        tiers={"tiny": "cx22"},
    )


def test_an_llm_backend_takes_its_key_from_the_environment(tmp_path: Path) -> None:
    text = MINIMAL.replace('agent = "image"', 'agent = "reference"') + (
        '[manifests.platform.llm]\nprovider = "openai"\nbase_url = "https://llm.example.com/v1/"\n'
        'model = "m1"\napi_key_setting = "LLM_KEY"\n'
    )

    catalog = _load(tmp_path, text, {"LLM_KEY": "sk-1"})

    llm = catalog.manifests["platform"].llm
    assert llm == LlmBackend("openai", "https://llm.example.com/v1", "m1", "LLM_KEY")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("agent_port = 9090", "agent_port = 70000"), "manifests.platform: agent_port: must be a TCP port 1..65535"),
        (('agent = "image"', 'agent = "docker"'), "manifests.platform: agent: must be 'reference' or 'image'"),
        (("image = 123456789", "image = ''"), "manifests.platform: image: must be an image name"),
        (('location = "fsn1"', 'location = "fsn1"\ncolour = "red"'), "regions.eu: colour: unknown field"),
        (('server_type = "cx22"', "server_type = 22"), "tiers.tiny: server_type: required, a non-empty string"),
        (("[regions.eu]", "[regions.'eu west']"), "regions.eu west: the id must be 1..80 letters"),
        (("[tiers.tiny]", "[sizes.tiny]"), "sizes: unknown section"),
        (
            ('agent = "image"', 'agent = "image"\nuser_data = "packages: [jq]"'),
            "manifests.platform: user_data: the extra user data must start with #cloud-config",
        ),
    ],
)
def test_each_problem_names_the_file_the_entry_and_the_field(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    problems = _problems(tmp_path, MINIMAL.replace(*change))

    assert any(line.startswith(f"{tmp_path / 'catalog.toml'}: {problem}") for line in problems), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = MINIMAL.replace("agent_port = 9090", "agent_port = 0").replace("image = 123456789", "image = true")

    assert len(_problems(tmp_path, text)) == 2


def test_an_llm_backend_whose_key_is_not_set_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('agent = "image"', 'agent = "reference"') + (
        '[manifests.platform.llm]\nprovider = "p"\nbase_url = "https://x"\nmodel = "m"\napi_key_setting = "NOPE"\n'
    )

    [problem] = _problems(tmp_path, text)

    assert problem.endswith("manifests.platform.llm: api_key_setting: the environment variable NOPE is not set")


def test_not_toml_and_no_file_are_one_line_each(tmp_path: Path) -> None:
    assert len(_problems(tmp_path, "[regions.eu\nlocation=")) == 1
    with pytest.raises(CatalogFileError, match="cannot be read"):
        load_catalog(tmp_path / "missing.toml", {})


def test_settings_read_the_catalog_and_stop_on_a_bad_one_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(MINIMAL)
    assert set(Settings.from_env({"SMOKE_CATALOG": str(path)}, dotenv=None).catalog.regions) == {"eu"}

    path.write_text(MINIMAL.replace("agent_port = 9090", "agent_port = -1"))
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"SMOKE_CATALOG": str(path)}, dotenv=None)

    assert str(caught.value).startswith(f"SMOKE_CATALOG: {path}: manifests.platform: agent_port:")
