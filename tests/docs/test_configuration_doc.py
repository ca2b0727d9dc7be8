"""docs/configuration.md is generated from the settings models and the click commands."""

import pytest
from tools.docs_gen.configuration import click_options, render_configuration, settings_commands
from tools.docs_gen.generate import DOCS_DIR

from iotedge.config import env_name, setting_fields

CONFIG_MD = DOCS_DIR / "configuration.md"


def test_configuration_doc_is_up_to_date():
    """The committed docs/configuration.md equals what the generator makes from the code."""
    assert CONFIG_MD.read_text() == render_configuration(), (
        "docs/configuration.md is out of date: run `make docs` and commit it"
    )


@pytest.mark.parametrize("command", ["sim", "edge"])
def test_every_setting_is_documented(command):
    """Every settings field appears with its environment variable and its description."""
    model, prefix, _ = settings_commands()[command]
    text = CONFIG_MD.read_text()
    for name, (_, info) in setting_fields(model).items():
        row = next((line for line in text.splitlines() if f"`{env_name(prefix, name)}`" in line), None)
        assert row is not None, f"{env_name(prefix, name)} missing from docs/configuration.md"
        assert (info.description or "") in row, f"{name}: description missing"


@pytest.mark.parametrize("command", ["sim", "edge"])
def test_every_flag_is_documented(command):
    """Every click option of `iotedge sim` / `iotedge edge` appears in docs/configuration.md."""
    _, _, click_command = settings_commands()[command]
    text = CONFIG_MD.read_text()
    for option in click_options(click_command).values():
        for flag in option["opts"] + option["secondary_opts"]:
            assert f"`{flag}`" in text, f"iotedge {command} {flag} missing from docs/configuration.md"


@pytest.mark.parametrize("command", ["sim", "edge"])
def test_every_flag_is_a_setting(command):
    """Each flag of the command sets a settings field of the same name (so the env twin exists)."""
    model, _, click_command = settings_commands()[command]
    strays = sorted(set(click_options(click_command)) - set(setting_fields(model)))
    assert not strays, f"iotedge {command} flags without a settings field: {strays}"
