"""The settings of both apps: one typed table each, validated, cached, reloaded; documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from durable_sessions.adapter import SessionAdapter
from durable_sessions.app_settings import DurableSessionsSettings, ds_settings
from durable_sessions.checks import check_settings
from durable_sessions.conf import AppSettings, Float, Int, Setting
from handoff_console.app_settings import ConsoleSettings, console_settings
from handoff_console.checks import check_console_settings

# Neither the database nor a channel layer backend: the PostgreSQL + Redis pass skips it.
pytestmark = pytest.mark.neutral

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


class ToySettings(AppSettings):
    """A small table of its own, to watch the mechanism without the apps."""

    setting_name = "TOY_APP"
    check_id = "toy.E001"

    LIMIT = Int(3, "a limit", positive=True)
    DELAY = Float(0.5, "a delay", positive=True)


def test_values_come_back_typed_with_defaults_filled_in(ds_config):
    ds_config(LEASE_TIMEOUT=20, HISTORY_LIMIT=7)
    assert ds_settings.LEASE_TIMEOUT == 20.0
    assert type(ds_settings.LEASE_TIMEOUT) is float  # given as an int
    assert type(ds_settings.HISTORY_LIMIT) is int
    assert type(ds_settings.FLUSH_INTERVAL_MS) is float
    assert ds_settings.RESYNC_INTERVAL == 0.2  # the tests' base keys are kept
    assert ds_settings.ADAPTER is SessionAdapter  # class paths come back imported
    assert ds_settings.OPERATOR_PERMISSION == "durable_sessions.operate_sessions"


def test_a_dict_value_is_read_only_and_apart_from_the_configured_one(ds_config, settings):
    ds_config(AGENT_OPTIONS={"reply": "hi"})
    with pytest.raises(TypeError):
        ds_settings.AGENT_OPTIONS["reply"] = "spoiled"  # type: ignore[index]
    settings.DURABLE_SESSIONS["AGENT_OPTIONS"]["reply"] = "changed in place"
    assert ds_settings.AGENT_OPTIONS == {"reply": "hi"}


def test_an_override_reloads_and_its_end_restores(ds_config):
    assert ds_settings.MAX_FRAME_BYTES == 65536
    with override_settings(DURABLE_SESSIONS={"MAX_FRAME_BYTES": 100}):
        assert ds_settings.MAX_FRAME_BYTES == 100
    assert ds_settings.MAX_FRAME_BYTES == 65536
    ds_config(MAX_FRAME_BYTES=200)
    assert ds_settings.MAX_FRAME_BYTES == 200


def test_the_settings_objects_are_read_only():
    with pytest.raises(AttributeError, match="read-only"):
        ds_settings.GROUP_PREFIX = "other"
    with pytest.raises(AttributeError):
        ds_settings.NO_SUCH_KEY  # noqa: B018


INVALID = [
    ({"NOPE": 1}, "DURABLE_SESSIONS: unknown key(s) NOPE. Known keys: ADAPTER, "),
    ({"MAX_FRAME_BYTES": "big"}, "DURABLE_SESSIONS['MAX_FRAME_BYTES'] must be an int, not 'big'"),
    ({"MAX_FRAME_BYTES": 1.5}, "DURABLE_SESSIONS['MAX_FRAME_BYTES'] must be an int, not 1.5"),
    ({"LEASE_TIMEOUT": True}, "DURABLE_SESSIONS['LEASE_TIMEOUT'] must be a number"),
    ({"LEASE_TIMEOUT": "15"}, "DURABLE_SESSIONS['LEASE_TIMEOUT'] must be a number"),
    ({"STAFF_ARE_OPERATORS": 1}, "DURABLE_SESSIONS['STAFF_ARE_OPERATORS'] must be True or False"),
    ({"GROUP_PREFIX": None}, "DURABLE_SESSIONS['GROUP_PREFIX'] must be a str, not None"),
    ({"AGENT_OPTIONS": ["a"]}, "DURABLE_SESSIONS['AGENT_OPTIONS'] must be a dict with str keys"),
    ({"AGENT_OPTIONS": {1: "a"}}, "DURABLE_SESSIONS['AGENT_OPTIONS'] must be a dict with str keys"),
    ({"REPLAY_PAGE_SIZE": 0}, "DURABLE_SESSIONS['REPLAY_PAGE_SIZE'] must be > 0, not 0"),
    ({"RESYNC_INTERVAL": -1}, "DURABLE_SESSIONS['RESYNC_INTERVAL'] must be > 0, not -1"),
    ({"RUNNER": "thread"}, "DURABLE_SESSIONS['RUNNER'] must be 'embedded' or 'worker'"),
    ({"PRESENCE_BACKEND": "disk"}, "DURABLE_SESSIONS['PRESENCE_BACKEND'] must be 'auto' or "),
    ({"ADAPTER": "Adapter"}, "DURABLE_SESSIONS['ADAPTER'] must be a dotted path"),
    ({"HEARTBEAT_INTERVAL": 8.0}, "HEARTBEAT_INTERVAL must be at most half of LEASE_TIMEOUT"),
    (
        {"HEARTBEAT_INTERVAL": 2, "LEASE_TIMEOUT": 3},
        "HEARTBEAT_INTERVAL must be at most half of LEASE_TIMEOUT",
    ),
    ({"PRESENCE_HEARTBEAT": 25}, "PRESENCE_HEARTBEAT must be at most half of PRESENCE_TTL"),
    ({"OPERATOR_PERMISSION": "operate"}, "OPERATOR_PERMISSION must be 'app_label.codename'"),
]


@pytest.mark.parametrize(("configured", "message"), INVALID)
def test_an_invalid_setting_is_refused_naming_the_key(settings, configured, message):
    settings.DURABLE_SESSIONS = configured
    with pytest.raises(ImproperlyConfigured) as raised:
        ds_settings.GROUP_PREFIX  # noqa: B018 (any key: the whole dict is validated)
    assert message in str(raised.value)
    [error] = check_settings()
    assert error.id == "durable_sessions.E001"
    assert message in error.msg


def test_the_setting_must_be_a_dict(settings):
    settings.DURABLE_SESSIONS = [("RUNNER", "worker")]
    with pytest.raises(ImproperlyConfigured, match="DURABLE_SESSIONS must be a dict, not list"):
        ds_settings.RUNNER  # noqa: B018


def test_the_rules_between_keys_accept_exactly_half(ds_config):
    ds_config(HEARTBEAT_INTERVAL=1, LEASE_TIMEOUT=2, PRESENCE_HEARTBEAT=5, PRESENCE_TTL=10)
    assert (ds_settings.HEARTBEAT_INTERVAL, ds_settings.PRESENCE_TTL) == (1.0, 10.0)


def test_a_class_path_that_cannot_be_imported_is_refused_when_read_and_by_the_check(ds_config):
    ds_config(AGENT="tests.nowhere.Agent")
    assert ds_settings.GROUP_PREFIX == "ds"  # imported on its own first read, not before
    with pytest.raises(ImproperlyConfigured, match=r"DURABLE_SESSIONS\['AGENT'\]: cannot import"):
        ds_settings.AGENT  # noqa: B018
    [error] = check_settings()
    assert error.id == "durable_sessions.E001"
    assert "'tests.nowhere.Agent'" in error.msg


def test_a_valid_setting_passes_the_checks(ds_config):
    ds_config(ADAPTER="durable_sessions.adapter.SessionAdapter", PROCESSES=1)
    assert check_settings() == []
    assert check_console_settings() == []


def test_reload_callbacks_run_on_the_setting_and_on_the_settings_named_with_also(settings):
    toy = ToySettings()
    calls: list[str] = []
    toy.on_reload(lambda: calls.append("toy"))
    toy.on_reload(lambda: calls.append("layer"), also=["CHANNEL_LAYERS"])
    assert (toy.LIMIT, toy.DELAY) == (3, 0.5)
    settings.TOY_APP = {"LIMIT": 4}
    assert calls == ["toy", "layer"]
    assert toy.LIMIT == 4
    calls.clear()
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert calls == ["layer"]
    calls.clear()
    settings.SOMETHING_ELSE = 1
    assert calls == []


def test_the_check_reads_the_setting_afresh_and_leaves_the_cache_alone(settings):
    toy = ToySettings()
    assert toy.LIMIT == 3
    # A change this object is not told about: the check still sees it.
    setting_changed.disconnect(toy._setting_changed)
    settings.TOY_APP = {"LIMIT": -1}
    [error] = toy.check()
    assert (error.id, error.msg) == ("toy.E001", "TOY_APP['LIMIT'] must be > 0, not -1.")
    assert toy.LIMIT == 3


def test_a_mistake_in_a_table_fails_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"Broken.LIMIT: the default must be an int, not '3'"):

        class Broken(AppSettings):
            setting_name = "BROKEN"
            check_id = "broken.E001"
            LIMIT = Int("3", "a limit")


def test_the_console_settings_are_typed_and_validated(console_config, settings):
    assert console_settings.REFRESH_SECONDS == 5.0
    console_config(REFRESH_SECONDS=2, SNAPSHOT_AFTER=3)
    assert type(console_settings.REFRESH_SECONDS) is float
    assert (console_settings.REFRESH_SECONDS, console_settings.SNAPSHOT_AFTER) == (2.0, 3)
    console_config(DEBOUNCE_SECONDS=2)  # merged: the keys above stay
    assert console_settings.REFRESH_SECONDS == 2.0
    settings.HANDOFF_CONSOLE = {"REFRESH": 1}
    with pytest.raises(ImproperlyConfigured, match=r"HANDOFF_CONSOLE: unknown key\(s\) REFRESH"):
        console_settings.REFRESH_SECONDS  # noqa: B018
    settings.HANDOFF_CONSOLE = {"MAX_NOTE_CHARS": "4000"}
    [error] = check_console_settings()
    assert error.id == "handoff_console.E001"
    assert "HANDOFF_CONSOLE['MAX_NOTE_CHARS'] must be an int" in error.msg


def documented_rows(title: str) -> dict[str, str]:
    """The rows of the tables in the ``## title`` section of docs/settings.md, by key."""
    text = DOCS.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return {
        match.group(1): match.group(0)
        for match in re.finditer(r"^\| `([A-Z_]+)` \|.*$", section, flags=re.MULTILINE)
    }


@pytest.mark.parametrize(
    ("title", "table"),
    [("DURABLE_SESSIONS", DurableSessionsSettings), ("HANDOFF_CONSOLE", ConsoleSettings)],
)
def test_every_key_is_documented_with_its_type_and_default(title, table):
    rows = documented_rows(title)
    definitions = table.definitions()
    assert list(rows) == list(definitions)  # same keys, same order, nothing stale
    for key, definition in definitions.items():
        expected = f"| `{key}` | {definition.type_label} | `{definition.default_label}` |"
        assert rows[key].startswith(expected), rows[key]
        assert definition.doc


def test_every_number_is_positive_as_the_docs_say():
    tables = [*DurableSessionsSettings.definitions().values()]
    tables += ConsoleSettings.definitions().values()
    numbers = [d for d in tables if isinstance(d, Int | Float)]
    assert numbers and all(d.positive for d in numbers)
    assert all(isinstance(d, Setting) for d in tables)
