"""The alerting config: every option documented in the example, and mistakes named precisely without secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from opstui.config import load_config
from opstui.config.alerts import AlertsConfig, RuleConfig, TelegramConfig
from opstui.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_the_example_documents_every_alerting_option() -> None:
    text = (ROOT / "config.example.toml").read_text()
    config = load_config(ROOT / "config.example.toml", environ={})
    assert config.report.time == "08:00" and config.report.timezone == "Asia/Almaty"
    assert not config.telegram.configured  # no token in the environment: nothing is sent
    base = set(RuleConfig.model_fields)
    for name, field in AlertsConfig.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, RuleConfig):
            assert f"[alerts.{name}]" in text, name
            for option, info in section.model_fields.items():
                if option not in base:
                    assert f"{info.alias or option} =" in text or f"[alerts.{name}.{option}]" in text, (name, option)
        else:
            assert f"{name} =" in text or f"[[alerts.{name}]]" in text, name
    for rule_option in ("enabled", "for", "failures", "successes", "ignore"):
        assert f"{rule_option} = " in text, rule_option
    for option in TelegramConfig.model_fields:
        assert f"{option} =" in text, option


def test_for_is_written_as_for_and_errors_name_it(write_config) -> None:  # type: ignore[no-untyped-def]
    config = load_config(write_config('[alerts.memory]\nfor = "5m"\n'))
    assert config.alerts.memory.for_ == 300.0
    with pytest.raises(ConfigError) as caught:
        load_config(write_config('[alerts.memory]\nfor = "soon"\n'))
    assert "alerts.memory.for: 'soon' is not a duration" in str(caught.value)


def test_a_malformed_token_is_refused_without_being_shown(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config('[telegram]\ntoken = "my-secret-value-xyz"\nchat_id = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}:5: telegram.token: this does not look like a bot token (from @BotFather: digits, a colon, "
        "then letters)"
    )
    assert "my-secret-value" not in str(caught.value)


def test_a_token_needs_a_chat(write_config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="a token is set but no chat_id"):
        load_config(write_config('[telegram]\ntoken = "123456:TEST-not-a-real-token"\n'))


def test_a_bad_maintenance_window_says_how_to_write_one(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config(
        '[[alerts.maintenance]]\nname = "deploy"\ncron = "every night"\nduration = "30m"\ntimezone = "Mars/Base"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}:6: alerts.maintenance[0].cron: 'every night' is not a crontab expression")
    assert lines[0].endswith("write it like '0 3 * * *' (minute hour day month weekday)")
    assert lines[1] == (
        f"{path}:8: alerts.maintenance[0].timezone: unknown timezone 'Mars/Base'; use an IANA name such as "
        "'Europe/Berlin'"
    )


def test_a_typo_in_a_rule_gets_a_suggestion(write_config) -> None:  # type: ignore[no-untyped-def]
    path = write_config("[alerts.restart_loop]\nrestart = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert (
        str(caught.value) == f"{path}:5: alerts.restart_loop.restart: unknown key 'restart' (did you mean 'restarts'?)"
    )
