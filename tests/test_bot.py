"""The Telegram command bot against the fake Bot API: who may do what, confirmations, real actions, polling."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot_helpers import ADMIN, OTHER_ADMIN, STRANGER, VIEWER, until
from opstui.actions import Actor
from opstui.alerts import active_silences
from opstui.bot.confirm import Confirmations
from opstui.bot.status import BotStatus, bot_check
from opstui.config import ConfigError, load_config
from opstui.model import CheckInfo, Level, LogTail
from telegram_api import TOKEN, Message


def ran(tmp_path: Path) -> list[str]:
    """The processes the restart action really restarted, in order."""
    marker = tmp_path / "restarted.txt"
    return marker.read_text().split() if marker.exists() else []


async def finished(message: Message) -> str:
    return await until(lambda: message.text if message.text[:1] in "✅❌⛔✖⌛" else None, "the outcome in the message")


# ---------------------------------------------------------------------------------------------- who may do what


async def test_a_stranger_is_refused_told_their_id_and_audited(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    answer = await bot.says(STRANGER, "/status")
    assert "You may not use this bot" in answer.text and str(STRANGER) in answer.text
    assert "web-1" not in answer.text, "a stranger learns nothing about the system"
    # Trying again within a minute: audited again, but not answered again (no reply flood).
    bot.api.user_says(STRANGER, "/restart worker")
    await bot.says(ADMIN, "/whoami")  # handled after the stranger's, so the stranger's is done
    assert [m.chat_id for m in bot.api.messages].count(STRANGER) == 1
    assert ran(tmp_path) == []
    refusals = [e for e in bot.audit() if e.actor_id == str(STRANGER)]
    assert [(e.action, e.result, e.kind) for e in refusals] == [
        ("/status", "refused", "bot"),
        ("/restart", "refused", "bot"),
    ]
    assert refusals[0].actor == f"telegram {STRANGER} @user{STRANGER}"
    assert refusals[0].reason == "not in [bot] admins or viewers" and refusals[1].args == ("/restart worker",)


async def test_whoami_tells_anyone_their_id_and_how_to_be_let_in(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    answer = await bot.says(STRANGER, "/whoami")
    assert f"Your Telegram user id is {STRANGER} (@user{STRANGER})" in answer.text
    assert f"adds {STRANGER} to [bot] viewers" in answer.text
    assert "You are an admin of this bot." in (await bot.says(ADMIN, "/whoami")).text
    assert bot.audit() == [], "asking who you are is not a refusal"


async def test_a_viewer_can_read_the_status_but_not_restart(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    status = await bot.says(VIEWER, "/status")
    text = status.text
    assert text.startswith("🔴 web-1 · critical")
    assert "👑 web-1: leading (a single daemon)" in text
    assert "🔴 worker errored · 283 restarts (12 last hour)" in text and "🟢 api online" in text
    assert "🟠 incoming: 162" in text
    assert "🔴 worker restarted 12 times in 10m · 5m" in text
    assert "🟢 daily-batch: held by vps-2" in text and "🔴 report: processed 120 · sent 95 · failed 3" in text
    health = (await bot.says(VIEWER, "/health")).text
    assert "🔴 api: HTTP 503 · 41 ms\n   • whatsapp: session expired" in health
    queue = (await bot.says(VIEWER, "/queue incoming")).text
    assert queue.startswith("🟠 incoming (list): 162 waiting") and "warning at 100, critical at 1000" in queue
    refused = await bot.says(VIEWER, "/restart worker")
    assert "only [bot] admins may run it (you are a viewer)" in refused.text and not refused.buttons()
    assert ran(tmp_path) == []
    entry = bot.audit()[-1]
    assert (entry.actor_id, entry.action, entry.result) == (str(VIEWER), "/restart", "refused")


async def test_read_only_mode_refuses_every_change_through_the_guard(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot(read_only=True)
    refused = await bot.says(ADMIN, "/restart worker")
    assert "read-only mode" in refused.text and not refused.buttons()
    assert "read-only mode" in (await bot.says(ADMIN, "/silence worker 1h")).text
    assert active_silences(bot.store) == [] and ran(tmp_path) == []
    assert [e.result for e in bot.audit()] == ["refused", "refused"]
    assert (await bot.says(ADMIN, "/status")).text.startswith("🔴 web-1"), "reading still works"


async def test_commands_in_other_chats_and_for_other_bots(make_bot) -> None:  # type: ignore[no-untyped-def]
    group = -100777
    bot = make_bot(chats=[group])
    api = bot.api
    refused = await bot.says(ADMIN, "/status")  # a private chat, not in [bot] chats
    assert "takes no commands in this chat" in refused.text
    api.user_says(ADMIN, "/status@some_other_bot", chat_id=group)
    answer = await bot.says(ADMIN, "/status@opstui_test_bot", chat_id=group)
    assert answer.text.startswith("🔴 web-1") and len(api.texts(group)) == 1


async def test_a_command_sent_while_the_bot_was_down_is_not_acted_on(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    answer = await bot.says(
        ADMIN, "/silence worker 2h", date=bot.clock() - 3630
    )  # a whole hour ago, whatever the rounding of dates
    assert "sent 1h ago, while opstui's bot was not running; nothing was done" in answer.text
    assert active_silences(bot.store) == []


# ---------------------------------------------------------------------------------------------- running actions


async def test_a_confirmed_restart_runs_and_the_message_shows_its_result(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/restart worker")
    assert asked.text.startswith("❓ restart · process worker")
    assert "restarted.txt worker" in asked.text, "the message shows exactly what will run"
    assert "Confirm within 60 s." in asked.text
    assert [b["text"] for b in asked.buttons()] == ["✅ Confirm", "✖ Cancel"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in asked.buttons())
    assert ran(tmp_path) == [], "nothing runs before the Confirm"

    pressed = await bot.press(ADMIN, asked)
    assert pressed["text"] == "Running restart…"
    outcome = await finished(asked)
    assert outcome.startswith("✅ restart · process worker\nok in ") and "(exit 0)" in outcome
    assert "confirmed by @user1001" in outcome
    assert "restarting worker" in outcome and "! worker online" in outcome, "the tail of the output"
    assert asked.reply_markup is None, "the buttons are gone"
    assert any(edit.startswith("▶️ restart") for edit in asked.edits), "it said it was running first"
    assert ran(tmp_path) == ["worker"]
    entry = bot.audit()[-1]
    assert (entry.action, entry.result, entry.exit_status, entry.actor_id) == ("restart", "ok", 0, str(ADMIN))
    assert entry.confirmation == "pressed Confirm in Telegram" and entry.target == "pm2:worker"


async def test_recover_lists_the_actions_and_runs_a_script_in_a_mode(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    listing = await bot.says(ADMIN, "/recover")
    assert "/recover recovery full|soft|company VALUE" in listing.text
    assert "/recover restart PROCESS" in listing.text and "/recover purge-dead ⚠️ dangerous" in listing.text
    asked = await bot.says(ADMIN, "/recover recovery company 42")
    assert asked.text.startswith("❓ recovery company 42")
    await bot.press(ADMIN, asked)
    outcome = await finished(asked)
    assert outcome.startswith("✅ recovery company 42") and "recovery mode company 42" in outcome
    refused = await bot.says(ADMIN, "/recover recovery panic")
    assert "mode 'panic' is not one of: full, soft, company" in refused.text and not refused.buttons()
    assert bot.audit()[-1].result == "refused"


async def test_from_a_phone_a_restart_is_three_taps(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    menu = await bot.says(ADMIN, "/restart")
    assert menu.text.startswith("❓ restart: which process?")
    assert [b["text"] for b in menu.buttons()] == ["worker", "api", "✖ Cancel"]
    other = await bot.press(OTHER_ADMIN, menu)
    assert "only @user1001" in other["text"] and menu.buttons(), "a menu is the asker's too"
    await bot.press(ADMIN, menu)  # "worker"
    await until(lambda: menu.text.startswith("❓ restart · process worker"), "the confirmation in the same message")
    await bot.press(ADMIN, menu)  # Confirm
    assert (await finished(menu)).startswith("✅ restart · process worker")
    assert ran(tmp_path) == ["worker"] and len(bot.api.texts(ADMIN)) == 1, "one message, from question to result"


async def test_recover_asks_for_the_action_then_its_mode(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    menu = await bot.says(ADMIN, "/recover")
    labels = [b["text"] for b in menu.buttons()]
    assert labels == ["restart", "purge-dead", "slow", "recovery", "✖ Cancel"]
    await bot.press(ADMIN, menu, button=labels.index("recovery"))
    await until(lambda: menu.text.startswith("❓ recovery: which mode?"), "the modes")
    assert [b["text"] for b in menu.buttons()] == ["full", "soft", "company", "✖ Cancel"]
    await bot.press(ADMIN, menu, button=1)
    await until(lambda: menu.text.startswith("❓ recovery soft"), "the confirmation")
    company = await bot.says(ADMIN, "/recover recovery company")
    assert (
        company.text
        == "✍️ recovery needs a value (the value after the mode company): send\n/recover recovery company VALUE"
    )
    await bot.press(ADMIN, menu)
    outcome = await finished(menu)
    assert outcome.startswith("✅ recovery soft") and "recovery mode soft" in outcome


async def test_cancel_runs_nothing_and_is_recorded(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/restart worker")
    pressed = await bot.press(ADMIN, asked, button=1)
    assert pressed["text"] == "Cancelled: nothing runs"
    assert (await finished(asked)).startswith("✖ restart · process worker\ncancelled by @user1001: nothing ran")
    assert ran(tmp_path) == []
    assert (bot.audit()[-1].result, bot.audit()[-1].reason) == ("cancelled", "pressed Cancel in Telegram")


async def test_another_persons_press_a_forged_one_and_a_replay_do_nothing(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/restart worker")
    other = await bot.press(OTHER_ADMIN, asked)  # an admin too, but not the one who asked
    assert other["show_alert"] and "only @user1001, who asked for it, can confirm this" in other["text"]
    confirm = asked.buttons()[0]["callback_data"]
    verb, nonce, deadline, _ = confirm.split(".")
    forged = await bot.press(ADMIN, asked, data=f"{verb}.{nonce}.{deadline}.AAAAAAAAAAAAAAAA")
    assert "signature does not match" in forged["text"]
    later = await bot.press(ADMIN, asked, data=f"{verb}.{nonce}.zzzzzzz.{confirm.split('.')[3]}")
    assert "signature does not match" in later["text"], "a deadline cannot be moved"
    assert ran(tmp_path) == [] and asked.reply_markup is not None, "still waiting for the one who asked"

    await bot.press(ADMIN, asked)
    await finished(asked)
    replay = await bot.press(ADMIN, asked, data=confirm)
    assert "already confirmed: nothing more was done" in replay["text"]
    await asyncio.sleep(0.3)
    assert ran(tmp_path) == ["worker"], "it ran once"
    refusals = [(e.actor_id, e.action, e.reason) for e in bot.audit() if e.result == "refused"]
    assert refusals[0][:2] == (str(OTHER_ADMIN), "restart") and "only @user1001" in (refusals[0][2] or "")
    assert [r[1] for r in refusals] == ["restart", "restart", "restart", "restart"]


async def test_an_expired_confirmation_does_nothing_and_says_so(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/restart worker")
    bot.clock.advance(61)
    pressed = await bot.press(ADMIN, asked)
    assert "expired: a confirmation is valid for 60 s; ask again" in pressed["text"]
    text = await finished(asked)
    assert text.startswith("⌛ restart · process worker\nnot confirmed within 60 s: nothing ran")
    assert ran(tmp_path) == []
    results = [(e.action, e.result) for e in bot.audit()]
    assert ("restart", "cancelled") in results and ("restart", "refused") in results


async def test_an_unanswered_confirmation_expires_by_itself(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/restart worker")
    bot.clock.advance(61)
    assert (await finished(asked)).startswith("⌛ restart")
    assert asked.reply_markup is None
    assert bot.audit()[-1].reason == "not confirmed within 60 s in Telegram"


async def test_a_dangerous_action_needs_its_name_typed_never_a_button(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    asked = await bot.says(ADMIN, "/recover purge-dead")
    assert [b["text"] for b in asked.buttons()] == ["✖ Cancel"]
    code = asked.text.split("/confirm ")[1].split()[0]
    assert f"send /confirm {code} purge-dead within 60 s" in asked.text
    other = await bot.says(OTHER_ADMIN, f"/confirm {code} purge-dead")
    assert "was asked for by @user1001" in other.text and asked.text.startswith("❓"), "bound to the asker"
    bot.api.user_says(ADMIN, f"/confirm {code} purge")  # one try, as at a terminal
    refused = await finished(asked)
    assert refused.startswith("⛔ purge-dead") and "runs only when 'purge-dead' is typed (got 'purge')" in refused

    asked = await bot.says(ADMIN, "/recover purge-dead")
    code = asked.text.split("/confirm ")[1].split()[0]
    bot.api.user_says(ADMIN, f"/confirm {code} purge-dead")
    outcome = await finished(asked)
    assert outcome.startswith("✅ purge-dead") and "purged 3 dead jobs" in outcome
    entry = bot.audit()[-1]
    assert (entry.result, entry.confirmation) == ("ok", "typed its name in Telegram (/confirm)")
    assert "no confirmation" in (await bot.says(ADMIN, f"/confirm {code} purge-dead")).text, "used once"


# ---------------------------------------------------------------------------------------------- what it says


async def test_long_answers_are_split_and_every_string_escaped(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    assert bot.snapshot is not None
    hostile = tuple(f"{i:02d} <b>not bold</b> & <script> password=hunter2secret " + "x" * 200 for i in range(40))
    tail = LogTail(key="pm2:<worker>", name="<worker>", source="pm2", path="/var/log/<w>.log", lines=hostile)
    bot.snapshot = bot.snapshot.replace(logs=(tail,))
    first = await bot.says(ADMIN, "/logs <worker>")
    await until(lambda: len(bot.api.texts(ADMIN)) >= 2, "the second part")
    parts = bot.api.texts(ADMIN)
    assert first.text.startswith("(1/2) 📜 <worker> /var/log/<w>.log") and parts[1].startswith("(2/2) ")
    assert all(len(part) <= 4096 for part in parts)
    shown = "\n".join(parts)
    assert "20 <b>not bold</b> & <script>" in shown and "39 <b>" in shown, "the last 20 lines, as written"
    assert "19 <b>" not in shown
    assert "hunter2secret" not in shown and "password=***" in shown


def test_a_button_is_bound_to_its_asker_chat_and_deadline() -> None:
    now = [1_800_000_000.0]
    confirmations = Confirmations(TOKEN, ttl=60, clock=lambda: now[0])
    plan: Any = SimpleNamespace(action=SimpleNamespace(name="restart"), actor=Actor.telegram(ADMIN, "ann"))
    pending = confirmations.add(plan, chat_id=ADMIN, title="restart")
    pending.message_id = 7
    yes = confirmations.button("y", pending)
    assert len(yes.encode()) <= 64
    assert "signature" in (confirmations.decide(yes, user_id=ADMIN, chat_id=-100, message_id=7).refusal or "")
    assert "only @ann" in (confirmations.decide(yes, user_id=VIEWER, chat_id=ADMIN, message_id=7).refusal or "")
    another_key = Confirmations("654321:TEST-another-fake-token", ttl=60, clock=lambda: now[0])
    assert another_key.button("y", pending) != yes, "the key comes from the token"
    decision = confirmations.decide(yes, user_id=ADMIN, chat_id=ADMIN, message_id=7)
    assert (decision.verb, decision.pending) == ("y", pending)
    assert "already confirmed" in (confirmations.decide(yes, user_id=ADMIN, chat_id=ADMIN, message_id=7).refusal or "")
    late = confirmations.add(plan, chat_id=ADMIN, title="restart")
    now[0] += 61
    decision = confirmations.decide(confirmations.button("y", late), user_id=ADMIN, chat_id=ADMIN, message_id=None)
    assert decision.expired and decision.pending is late and decision.verb is None
    restarted = Confirmations(TOKEN, ttl=60, clock=lambda: now[0])
    fresh = confirmations.add(plan, chat_id=ADMIN, title="restart")
    refusal = restarted.decide(confirmations.button("y", fresh), user_id=ADMIN, chat_id=ADMIN, message_id=None).refusal
    assert refusal is not None and "opstui restarted since this was asked" in refusal


def test_the_bots_fact_says_what_a_person_must_do() -> None:
    now = 1_800_000_000.0
    polling = BotStatus("polling", username="ops_bot", since=now - 600, last_command_at=now - 120, updated_at=now)
    assert bot_check(polling, now=now) == CheckInfo(
        key="telegram-bot",
        name="telegram bot",
        kind="bot",
        level=Level.OK,
        source="bot",
        detail="@ops_bot answers commands; the last came 2m ago",
    )
    assert bot_check(polling, now=now + 600) is None, "a bot that stopped refreshing it no longer runs"
    conflict = BotStatus("conflict", problem="another program polls", since=now - 30, updated_at=now)
    assert bot_check(conflict, now=now).level is Level.OK  # type: ignore[union-attr]
    assert bot_check(conflict, now=now + 60).level is Level.WARNING  # type: ignore[union-attr]
    revoked = BotStatus("unauthorized", problem="getMe: Telegram answered 401: Unauthorized", updated_at=now - 86400)
    check = bot_check(revoked, now=now)
    assert check is not None and check.level is Level.CRITICAL and "fix [telegram]" in (check.detail or "")


def test_the_config_says_what_is_wrong_with_bot(tmp_path: Path) -> None:
    path = tmp_path / "opstui.toml"
    path.write_text("[bot]\nenabled = true\nadmins = [1001]\n")
    with pytest.raises(ConfigError, match=r"bot.enabled = true needs \[telegram\] token"):
        load_config(path)
    path.write_text("[bot]\nadmins = [-1001234]\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == "bot.admins" and error.value.line == 2
    assert "is not a Telegram user id" in str(error.value) and "/whoami" in str(error.value)


async def test_a_reloaded_config_lets_a_new_viewer_in_without_dropping_what_waits(make_bot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    assert "You may not use this bot" in (await bot.says(STRANGER, "/status")).text
    asked = await bot.says(ADMIN, "/restart worker")
    reloaded = bot.config.model_copy(update={"bot": bot.config.bot.model_copy(update={"viewers": [VIEWER, STRANGER]})})
    assert bot.bot.reconfigure(reloaded)
    assert (await bot.says(STRANGER, "/status")).text.startswith("🔴 web-1")
    await bot.press(ADMIN, asked)
    assert (await finished(asked)).startswith("✅ restart"), "a confirmation asked before the reload still works"
    new_token = reloaded.model_copy(
        update={"telegram": reloaded.telegram.model_copy(update={"token": "654321:TEST-another-fake-token"})}
    )
    assert not bot.bot.reconfigure(new_token), "another token is another bot: it must be started anew"


async def test_silences_are_set_listed_and_ended_from_telegram(make_bot) -> None:  # type: ignore[no-untyped-def]
    bot = make_bot()
    usage = await bot.says(ADMIN, "/silence")
    assert "Firing now:" in usage.text and "restart_loop:pm2:worker (worker)" in usage.text
    made = await bot.says(ADMIN, "/silence restart_loop 2h deploy; <b>")
    assert made.text.startswith("🔕 silence 1 on 'restart_loop' until ")
    assert "by telegram 1001 @user1001 (deploy; <b>)" in made.text and "it mutes 1 alert(s)" in made.text
    assert (await bot.says(VIEWER, "/silences")).text.startswith("🔕 silence 1 on 'restart_loop'")
    assert "only [bot] admins" in (await bot.says(VIEWER, "/unsilence 1")).text
    assert (await bot.says(ADMIN, "/silence worker soon")).text.startswith("⛔ 'soon' is not a duration")
    ended = await bot.says(ADMIN, "/unsilence 1")
    assert ended.text.startswith("🔔 ended silence 1 on 'restart_loop'")
    assert (await bot.says(ADMIN, "/silences")).text == "No silences are active."
    assert [(e.action, e.result) for e in bot.audit()] == [
        ("/silence", "ok"),
        ("/unsilence", "refused"),
        ("/unsilence", "ok"),
    ]
