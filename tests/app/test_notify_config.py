from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from app.config import ConfigError, Settings, load
from app.notify.config import Endpoint, parse_duration

REGISTRY2_EXAMPLE = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: /srv/registry
notifications:
  events:
    includereferences: true
  endpoints:
    - name: alistener
      disabled: false
      url: https://my.listener.com/event
      headers:
        Authorization: [Bearer <your token>]
      timeout: 1s
      threshold: 10
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        mediatypes:
           - application/octet-stream
        actions:
           - pull
    - name: old-listener
      disabled: true
      url: ""
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("1s", timedelta(seconds=1)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("2m3.5s", timedelta(minutes=2, seconds=3.5)),
        (".5s", timedelta(milliseconds=500)),
        ("300us", timedelta(microseconds=300)),
        ("300µs", timedelta(microseconds=300)),
        ("1000ns", timedelta(microseconds=1)),
        ("0", timedelta(0)),
        ("-1s", timedelta(seconds=-1)),
        ("+2s", timedelta(seconds=2)),
    ],
)
def test_durations_parse_as_go_parses_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "1", "s", "1sec", "1 s", "1.s.", "ms", "1d", "-", "1s2"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_the_registry2_example_config_loads(tmp_path: Path) -> None:
    """registry:2's documented notifications section is accepted (it used to be refused)."""
    path = tmp_path / "config.yml"
    path.write_text(REGISTRY2_EXAMPLE)
    settings = load(str(path), environ={})
    n = settings.notifications
    assert n.events.includereferences is True
    assert [e.name for e in n.active] == ["alistener"]
    e = n.active[0]
    assert e.url == "https://my.listener.com/event"
    assert e.headers == {"Authorization": ["Bearer <your token>"]}
    assert (e.effective_timeout, e.effective_threshold, e.effective_backoff) == (1.0, 10, 1.0)
    assert e.ignore.actions == ["pull"]
    assert e.ignored_media_types == {"application/octet-stream"}


def test_endpoints_can_come_from_the_environment() -> None:
    """REGISTRY_* values are YAML, so a whole endpoint list can be given in one variable."""
    environ = {
        "REGISTRY_NOTIFICATIONS_ENDPOINTS": "[{name: ci, url: 'http://hooks.test/', timeout: 2s}]",
        "REGISTRY_NOTIFICATIONS_EVENTS_INCLUDEREFERENCES": "true",
    }
    n = load(None, environ=environ).notifications
    assert [(e.name, e.url, e.effective_timeout) for e in n.active] == [("ci", "http://hooks.test/", 2.0)]
    assert n.events.includereferences is True


def test_defaults_are_registry2s() -> None:
    """timeout 1s, threshold 10, backoff 1s when unset or not positive (endpoint.go defaults())."""
    e = Endpoint.model_validate({"name": "a", "url": "http://x/", "timeout": "0", "backoff": "-1s", "threshold": -3})
    assert (e.effective_timeout, e.effective_threshold, e.effective_backoff) == (1.0, 10, 1.0)
    assert e.maxbackoff == timedelta(minutes=5) and e.maxspoolbytes == 64 << 20


def test_integer_durations_are_nanoseconds() -> None:
    e = Endpoint.model_validate({"name": "a", "url": "http://x/", "timeout": 250_000_000})
    assert e.effective_timeout == 0.25


def test_a_header_given_as_one_value_is_one_value() -> None:
    headers = {"X-Token": "abc", "X-Two": ["1", "2"], "X-Num": [42, 1.5], "X-One": 7}
    e = Endpoint.model_validate({"name": "a", "url": "http://x/", "headers": headers})
    assert e.headers == {"X-Token": ["abc"], "X-Two": ["1", "2"], "X-Num": ["42", "1.5"], "X-One": ["7"]}


def test_a_header_yaml_reads_as_a_boolean_must_be_quoted(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "notifications:\n  endpoints:\n    - name: a\n      url: http://x/\n      headers:\n        X-On: [yes]\n"
    )
    with pytest.raises(ConfigError, match="X-On: YAML reads this value as a boolean; quote it"):
        load(str(path), environ={})


def test_settings_survive_the_json_hand_off_to_workers() -> None:
    """kura serve passes settings to workers as JSON: durations must read back exactly."""
    endpoint = {"name": "a", "url": "http://x/", "timeout": "1.5s", "backoff": "250ms", "maxbackoff": "1h"}
    settings = Settings.model_validate({"notifications": {"endpoints": [endpoint]}})
    again = Settings.model_validate_json(settings.model_dump_json())
    e = again.notifications.active[0]
    assert (e.timeout, e.backoff, e.maxbackoff) == (
        timedelta(seconds=1.5),
        timedelta(milliseconds=250),
        timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("endpoints", "message"),
    [
        ([{"url": "http://x/"}], r"endpoints\[0\]\.name is required"),
        ([{"name": "a", "url": "http://x/"}, {"name": "a", "url": "http://y/"}], "'a' is used twice"),
        ([{"name": "a", "url": "ftp://x/"}], r"endpoints\[0\]\.url must be an http"),
        ([{"name": "a", "disabled": True}, {"name": "b", "url": ""}], r"endpoints\[1\]\.url must be an http"),
        ([{"name": "a", "url": "http://x/", "timeout": "soon"}], "invalid duration 'soon'"),
        ([{"name": "a", "url": "http://x/", "timeout": True}], "a duration must be"),
        # Each of these was accepted, then failed every delivery (or every request making an event)
        ([{"name": "a", "url": "http://x/", "timeout": "99999999999h"}], "out of range"),
        ([{"name": "a", "url": "http://x/", "maxbackoff": 10**20}], "out of range"),
        ([{"name": "a", "url": "http://x/", "headers": {"Bad Name": ["x"]}}], "'Bad Name' is not a header name"),
        ([{"name": "a", "url": "http://x/", "headers": {1: ["x"]}}], "is not a header name"),
        ([{"name": "a", "url": "http://x/", "headers": {"X-V": ["caf\u00e9"]}}], "visible ASCII"),
        ([{"name": "a", "url": "http://x/", "headers": {"X-V": ["a\r\nX-Injected: 1"]}}], "visible ASCII"),
        ([{"name": "n" * 256, "url": "http://x/"}], r"endpoints\[0\]\.name is too long"),
        ([{"name": "\u65e5" * 29, "url": "http://x/"}], r"endpoints\[0\]\.name is too long"),  # 261 once escaped
    ],
)
def test_bad_endpoints_are_one_clear_error(tmp_path: Path, endpoints: list[dict[str, object]], message: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"notifications": {"endpoints": endpoints}}))
    with pytest.raises(ConfigError, match=message):
        load(str(path), environ={})


def test_disabled_endpoints_need_no_url_and_get_no_spool() -> None:
    settings = Settings.model_validate({"notifications": {"endpoints": [{"name": "quiet", "disabled": True}]}})
    assert settings.notifications.active == []


def test_spool_names_are_one_safe_path_component() -> None:
    def name(text: str) -> str:
        return Endpoint.model_validate({"name": text, "url": "http://x/"}).spool_name

    assert name("alistener") == "alistener"
    assert name("a/b") == "a%2Fb"
    assert name("..") == "%2E."
    assert name(".hidden") == "%2Ehidden"
