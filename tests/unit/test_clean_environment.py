"""The conftest's environment cleanup removes every variable any settings class reads (so a developer's
GENESYS_*, REDIS_URL or INTAKE_* never leaks into a test), checked against pydantic-settings' own view of which
variable feeds which field."""

from __future__ import annotations

import inspect
import os

import pytest
from pydantic_settings import BaseSettings, EnvSettingsSource

from genesys_closer.config import settings as module
from tests.conftest import remove_settings_variables

CLASSES = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
           if issubclass(cls, BaseSettings) and cls is not BaseSettings]


def read_names(cls: type[BaseSettings]) -> set[str]:
    """The variable names pydantic-settings reads for this class (its own field-to-variable mapping)."""
    source = EnvSettingsSource(cls)
    return {env_name for name, field in cls.model_fields.items()
            for _, env_name, _ in source._extract_field_info(field, name)}  # private, but theirs


def test_there_are_settings_classes() -> None:
    assert {"ProducerSettings", "IntakeSettings", "WorkerSettings"} <= {cls.__name__ for cls in CLASSES}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_cleanup_removes_every_variable_the_class_reads(cls: type[BaseSettings],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    names = read_names(cls)
    assert len(names) >= len(cls.model_fields)
    for name in names:
        monkeypatch.setenv(name.upper(), "from-a-developer-shell")
    monkeypatch.setenv("genesys_client_id", "lower case is read too")  # case-insensitive settings
    remove_settings_variables(monkeypatch)
    left = {name for name in os.environ if name.lower() in {n.lower() for n in names}}
    assert left == set()
    assert EnvSettingsSource(cls)() == {}
