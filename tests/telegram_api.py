"""A local HTTP server that behaves like the Telegram Bot API where opstui depends on it (see notes/telegram.md).

`FakeBotAPI` is a real HTTP server on 127.0.0.1; point `telegram.api_base` at `api.url`. It answers
`POST|GET /bot<token>/<method>` (method case-insensitive, JSON, form or query parameters) with Telegram's
envelope, and it checks what Telegram checks: the token (401), the chat (400 chat not found), the HTML markup
(TDLib's parser and its error texts, with UTF-8 byte offsets), the 4096-character limit after entity parsing,
flood control (429 with `parameters.retry_after` and a Retry-After header), group migration (400 with
`migrate_to_chat_id`). Faults are scripted per method (`fail`, `outage`): 5xx with nginx HTML bodies or JSON,
dropped connections before or after the message was recorded.

The command bot's side (getUpdates and what answers it): people write with `api.user_says(user_id, "/status")`
and press buttons with `api.press(user_id, message)`; getUpdates has Telegram's offset semantics (an update is
forgotten once a poll asks for a higher offset), sticky `allowed_updates`, long polls parked until an update
arrives, and the 409s: a second parked poll terminates the first, and a webhook (`api.webhook = url`) refuses
every poll until `deleteWebhook`. `editMessageText` keeps each message's history (`message.edits`) and says
"message is not modified" as Telegram does; `answerCallbackQuery` says "query is too old" when a query is
answered twice; `setMyCommands` validates the list; an inline button's `callback_data` over 64 bytes is refused.

Extending it: add a method with `api.handlers["name"] = fn`, where `fn(api, params)` returns the `result` or
raises `ApiError(status, description, parameters)`; `api.lock` guards shared state, `api.record(...)` logs
calls, and `api.clock` is the (injectable) time used for flood control and dates.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

TOKEN = "123456:TEST-not-a-real-token"
ALERTS_CHAT = -100200300400
"""A supergroup the bot is a member of (the default chat for tests)."""
PRIVATE_CHAT = 111222333

CONFLICT_POLLER = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")

NGINX_502 = (
    '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body bgcolor="white">\r\n'
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)

SUPPORTED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "tg-emoji", "code",
    "pre", "blockquote",
}  # fmt: skip
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot);?|#(\d+);?|#[xX]([0-9a-fA-F]+);?)")


class ApiError(Exception):
    """An error answer: HTTP status == error_code, Telegram's description, optional parameters."""

    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters or {}


@dataclass
class Message:
    message_id: int
    chat_id: int | str
    text: str
    """The text as a person sees it: tags stripped, entities decoded."""
    submitted: str
    """The text as sent (with markup)."""
    parse_mode: str | None
    thread_id: int | None = None
    link_preview_disabled: bool = False
    date: float = 0.0
    reply_markup: dict[str, Any] | None = None
    edits: list[str] = field(default_factory=list)
    """The visible text before each edit, oldest first (`text` is the current one)."""

    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row (empty when there is none)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    description: str | None = None


@dataclass
class Fault:
    method: str
    times: int
    status: int = 500
    description: str = "Internal Server Error"
    parameters: dict[str, Any] = field(default_factory=dict)
    html_body: str | None = None
    drop: bool = False
    """Close the connection without an answer and without recording the message (it never arrived)."""
    record_then_drop: bool = False
    """Record the message, then close the connection (Telegram delivered it; the client cannot know)."""
    after: int = 0
    """Let this many calls through first."""
    hang: float = 0.0
    """Hold the request this many seconds without answering, then close the connection (a stalled proxy); the
    message is not recorded."""


def parse_html(text: str) -> str:
    """What TDLib's HTML parser makes of `text`: the visible text, or ApiError with Telegram's own message."""
    out: list[str] = []
    stack: list[str] = []
    i = 0

    def offset(at: int) -> int:
        return len(text[:at].encode("utf-8"))

    def bad(message: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {message}")

    while i < len(text):
        char = text[i]
        if char == "&":
            match = _ENTITY.match(text, i)
            if match:
                named, decimal, hexa = match.groups()
                if named:
                    out.append({"lt": "<", "gt": ">", "amp": "&", "quot": '"'}[named])
                else:
                    out.append(chr(int(decimal) if decimal else int(hexa, 16)))
                i = match.end()
                continue
            out.append(char)
        elif char == "<":
            start = i
            if text.startswith("</", i):
                end = text.find(">", i)
                if end < 0:
                    raise bad(f"Unclosed end tag at byte offset {offset(start)}")
                name = text[i + 2 : end].strip().lower()
                if not stack:
                    raise bad(f"Unexpected end tag at byte offset {offset(start)}")
                if name and name != stack[-1]:
                    raise bad(
                        f'Unmatched end tag at byte offset {offset(start)}, expected "</{stack[-1]}>", '
                        f'found "</{name}>"'
                    )
                stack.pop()
                i = end + 1
                continue
            j = i + 1
            while j < len(text) and not text[j].isspace() and text[j] != ">":
                j += 1
            if j >= len(text):
                raise bad(f"Unclosed start tag at byte offset {offset(start)}")
            name = text[i + 1 : j].lower()
            if name not in SUPPORTED_TAGS:
                raise bad(f'Unsupported start tag "{name}" at byte offset {offset(start)}')
            quote = None
            while j < len(text) and (quote or text[j] != ">"):
                if text[j] in "\"'":
                    quote = None if quote == text[j] else (quote or text[j])
                j += 1
            if j >= len(text):
                raise bad(f"Unclosed start tag at byte offset {offset(start)}")
            stack.append(name)
            i = j + 1
            continue
        else:
            out.append(char)
        i += 1
    if stack:
        raise bad(f"Can't find end tag corresponding to start tag {stack[-1]}")
    return "".join(out)


class FakeBotAPI:
    """The fake Bot API server; use as a context manager or through the `telegram_api` fixture."""

    def __init__(self, token: str = TOKEN, *, clock: Callable[[], float] = time.time) -> None:
        self.token = token
        self.clock = clock
        self.lock = threading.RLock()
        self.chats: dict[int | str, dict[str, Any]] = {
            ALERTS_CHAT: {"id": ALERTS_CHAT, "type": "supergroup", "title": "Alerts"},
            PRIVATE_CHAT: {"id": PRIVATE_CHAT, "type": "private", "first_name": "Ann", "username": "ann"},
        }
        self.messages: list[Message] = []
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.outage_fault: Fault | None = None
        self.migrated: dict[int | str, int] = {}
        self.forbidden: dict[int | str, str] = {}
        self.flood_interval: float | None = None
        """Flood control: a second message to a chat within this many seconds (of `clock`) gets a 429."""
        self.flood_retry_after = 3
        self.handlers: dict[str, Callable[[FakeBotAPI, dict[str, Any]], Any]] = {
            "getme": lambda api, params: {
                "id": int(api.token.split(":")[0]),
                "is_bot": True,
                "first_name": "opstui",
                "username": "opstui_test_bot",
            },
            "sendmessage": FakeBotAPI._send_message,
            "getupdates": FakeBotAPI._get_updates,
            "deletewebhook": FakeBotAPI._delete_webhook,
            "setmycommands": FakeBotAPI._set_my_commands,
            "answercallbackquery": FakeBotAPI._answer_callback_query,
            "editmessagetext": FakeBotAPI._edit_message_text,
        }
        # The command bot's side: updates people send, and what the bot set up.
        self.updates: list[dict[str, Any]] = []
        self.confirmed_below = 0
        """Updates with a lower update_id were confirmed by a poll with a higher offset, and are forgotten. A test
        may lower it to play a bot that died before its next poll confirmed what it had handled."""
        self.allowed_updates: list[str] | None = None
        self.webhook: str | None = None
        """A webhook URL set by someone: getUpdates answers 409 until deleteWebhook."""
        self.commands: list[dict[str, Any]] | None = None
        self.answers: dict[str, dict[str, Any]] = {}
        """answerCallbackQuery parameters by callback query id."""
        self.updated = threading.Condition(self.lock)
        self._update_ids = itertools.count(734_001_000)
        self._query_ids = itertools.count(4_382_004_172_929_837_000)
        self._poll_generation = 0
        self._closing = False
        self._next_message_id = 1
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeBotAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api._handle(self)

            def do_POST(self) -> None:
                api._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.updated:
            self._closing = True  # parked polls answer now instead of holding their threads
            self.updated.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------------------------------------ scripting

    def fail(self, method: str = "sendMessage", *, times: int = 1, **fault: Any) -> None:
        """The next `times` calls of `method` fail as described (see `Fault`)."""
        with self.lock:
            self.faults.append(Fault(method=method.lower(), times=times, **fault))

    def outage(self, **fault: Any) -> None:
        """Every call fails as described until `outage()` is called with no arguments (Telegram is back)."""
        with self.lock:
            self.outage_fault = Fault(method="*", times=0, **fault) if fault else None

    def migrate(self, chat_id: int, new_chat_id: int) -> None:
        with self.lock:
            self.migrated[chat_id] = new_chat_id
            self.chats[new_chat_id] = {"id": new_chat_id, "type": "supergroup", "title": "Alerts (supergroup)"}

    def forbid(
        self, chat_id: int | str, description: str = "Forbidden: bot was kicked from the supergroup chat"
    ) -> None:
        with self.lock:
            self.forbidden[chat_id] = description

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """The visible text of every message received, in order (optionally of one chat)."""
        with self.lock:
            return [m.text for m in self.messages if chat_id is None or m.chat_id == chat_id]

    def record(self, method: str, params: dict[str, Any], status: int, description: str | None = None) -> None:
        with self.lock:
            self.calls.append(Call(method, params, status, description))

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f"expected {count} messages, got {len(self.messages)}: {self.texts()}")

    # ------------------------------------------------------------------------------------------ people

    def user(self, user_id: int, username: str | None = None) -> dict[str, Any]:
        name = username or f"user{user_id}"
        return {"id": user_id, "is_bot": False, "first_name": name.capitalize(), "username": name}

    def user_says(
        self,
        user_id: int,
        text: str,
        *,
        chat_id: int | None = None,
        username: str | None = None,
        date: float | None = None,
    ) -> int:
        """A person sends `text` in a chat (their private chat with the bot by default); returns the update_id."""
        with self.updated:
            sender = self.user(user_id, username)
            chat_id = user_id if chat_id is None else chat_id
            if chat_id not in self.chats:
                self.chats[chat_id] = (
                    {
                        "id": chat_id,
                        "type": "private",
                        "first_name": sender["first_name"],
                        "username": sender["username"],
                    }
                    if chat_id > 0
                    else {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
                )
            message: dict[str, Any] = {
                "message_id": self._next_message_id,
                "from": sender,
                "chat": self.chats[chat_id],
                "date": int(self.clock() if date is None else date),
                "text": text,
            }
            self._next_message_id += 1
            if text.startswith("/"):
                length = len(text.split()[0].encode("utf-16-le")) // 2
                message["entities"] = [{"offset": 0, "length": length, "type": "bot_command"}]
            return self.push({"message": message})

    def press(self, user_id: int, message: Message, *, button: int = 0, data: str | None = None) -> str:
        """A person presses an inline button under one of the bot's messages (or sends `data` as if they had);
        returns the callback query's id."""
        with self.updated:
            if data is None:
                data = message.buttons()[button]["callback_data"]
            query_id = str(next(self._query_ids))
            self.push(
                {
                    "callback_query": {
                        "id": query_id,
                        "from": self.user(user_id),
                        "message": {
                            "message_id": message.message_id,
                            "chat": self.chats[message.chat_id],
                            "date": int(message.date),
                            "text": message.text,
                        },
                        "chat_instance": "-8231651923455771000",
                        "data": data,
                    }
                }
            )
            return query_id

    def push(self, update: dict[str, Any]) -> int:
        """Queue an update (any type) for getUpdates; returns its update_id."""
        with self.updated:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self.updated.notify_all()
            return int(update["update_id"])

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not confirmed yet (what the next poll without an offset would get)."""
        with self.lock:
            return [u for u in self.updates if u["update_id"] >= self.confirmed_below]

    def message(self, message_id: int) -> Message:
        with self.lock:
            return next(m for m in self.messages if m.message_id == message_id)

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.method == method.lower()]

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
        """Wait (in the test's thread) until `predicate()` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; messages: {self.texts()}")

    # ------------------------------------------------------------------------------------------ serving

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z]+)", parts.path)
        params = self._params(request, parts.query)
        if not match or not match.group(1):
            self._answer(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        token, method = match.group(1), match.group(2).lower()
        with self.lock:
            fault = self._take_fault(method)
        if fault is not None and fault.drop:
            self.record(method, params, 0, "connection dropped")
            self._drop(request)
            return
        if fault is not None and fault.hang:
            self.record(method, params, 0, "hung")
            time.sleep(fault.hang)
            self._drop(request)
            return
        if token != self.token:
            self.record(method, params, 401, "Unauthorized")
            self._answer(request, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        if fault is not None and not fault.record_then_drop:
            self.record(method, params, fault.status, fault.description)
            if fault.html_body is not None:
                self._answer(request, fault.status, fault.html_body, content_type="text/html")
                return
            body: dict[str, Any] = {"ok": False, "error_code": fault.status, "description": fault.description}
            if fault.parameters:
                body["parameters"] = fault.parameters
            headers = {"Retry-After": str(fault.parameters["retry_after"])} if "retry_after" in fault.parameters else {}
            self._answer(request, fault.status, body, headers=headers)
            return
        handler = self.handlers.get(method)
        try:
            if handler is None:
                raise ApiError(404, "Not Found")
            result = handler(self, params)
        except ApiError as exc:
            self.record(method, params, exc.status, exc.description)
            body = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
            headers = {"Retry-After": str(exc.parameters["retry_after"])} if "retry_after" in exc.parameters else {}
            self._answer(request, exc.status, body, headers=headers)
            return
        self.record(method, params, 200)
        if fault is not None and fault.record_then_drop:
            self._drop(request)
            return
        self._answer(request, 200, {"ok": True, "result": result})

    def _take_fault(self, method: str) -> Fault | None:
        if self.outage_fault is not None:
            return self.outage_fault
        for fault in self.faults:
            if fault.method == method and fault.times > 0:
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                return fault
        return None

    @staticmethod
    def _params(request: BaseHTTPRequestHandler, query: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(query))
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        kind = request.headers.get("Content-Type", "")
        if raw and "json" in kind:
            params.update(json.loads(raw))
        elif raw:
            params.update(dict(parse_qsl(raw.decode())))
        return params

    @staticmethod
    def _drop(request: BaseHTTPRequestHandler) -> None:
        request.close_connection = True
        with contextlib.suppress(OSError):  # the client may have given up already (after a hang)
            request.connection.shutdown(2)

    @staticmethod
    def _answer(
        request: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            request.close_connection = True  # the client gave up on a parked poll (it was cancelled)

    # ------------------------------------------------------------------------------------------ methods

    def chat(self, raw: Any) -> dict[str, Any]:
        """The chat a `chat_id` parameter names, or the error Telegram gives for it."""
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        chat_id: int | str = int(raw) if re.fullmatch(r"-?\d+", str(raw)) else str(raw)
        if chat_id in self.migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self.migrated[chat_id]},
            )
        if chat_id in self.forbidden:
            raise ApiError(403, self.forbidden[chat_id])
        if chat_id not in self.chats:
            raise ApiError(400, "Bad Request: chat not found")
        return self.chats[chat_id]

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            chat = self.chat(params.get("chat_id"))
            text = str(params.get("text") or "")
            if not text:
                raise ApiError(400, "Bad Request: text is empty")
            mode = params.get("parse_mode")
            visible = parse_html(text) if str(mode).lower() == "html" else text
            if not visible.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            if len(visible) > 4096:
                raise ApiError(400, "Bad Request: message is too long")
            now = self.clock()
            if self.flood_interval is not None:
                last = [m.date for m in self.messages if m.chat_id == chat["id"]]
                if last and now - last[-1] < self.flood_interval:
                    raise ApiError(
                        429,
                        f"Too Many Requests: retry after {self.flood_retry_after}",
                        {"retry_after": self.flood_retry_after},
                    )
            preview = params.get("link_preview_options")
            if isinstance(preview, str):
                preview = json.loads(preview)
            markup = self._reply_markup(params)
            message = Message(
                message_id=self._next_message_id,
                chat_id=chat["id"],
                text=visible,
                submitted=text,
                parse_mode=mode,
                thread_id=params.get("message_thread_id"),
                link_preview_disabled=bool(isinstance(preview, dict) and preview.get("is_disabled")),
                date=now,
                reply_markup=markup,
            )
            self._next_message_id += 1
            self.messages.append(message)
            return {
                "message_id": message.message_id,
                "date": int(now),
                "chat": chat,
                "text": visible,
            }

    @staticmethod
    def _reply_markup(params: dict[str, Any]) -> dict[str, Any] | None:
        markup = params.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        if not isinstance(markup, dict):
            return None
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = min(100, max(1, int(params.get("limit") or 100)))
        timeout = min(50.0, max(0.0, float(params.get("timeout") or 0)))
        allowed = params.get("allowed_updates")
        with self.updated:
            if isinstance(allowed, str):
                allowed = json.loads(allowed)
            if allowed is not None:
                self.allowed_updates = list(allowed)  # sticky, as on Telegram
            if self.webhook is not None:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if offset > 0:
                self.confirmed_below = max(self.confirmed_below, offset)
            # A new poll terminates the one parked before it (that one answers 409).
            self._poll_generation += 1
            generation = self._poll_generation
            self.updated.notify_all()
            deadline = time.monotonic() + timeout
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT_POLLER)
                wanted = self.allowed_updates or ["message", "callback_query"]
                found = [
                    u
                    for u in self.updates
                    if u["update_id"] >= self.confirmed_below and any(kind in u for kind in wanted)
                ]
                remaining = deadline - time.monotonic()
                if found or self._closing or remaining <= 0:
                    return found[:limit]
                self.updated.wait(remaining)

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        with self.lock:
            if self.webhook is None:
                return True
            self.webhook = None
            if str(params.get("drop_pending_updates", "")).lower() in ("true", "1", "yes"):
                self.confirmed_below = max([self.confirmed_below, *(u["update_id"] + 1 for u in self.updates)])
            return True

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands", [])
        if isinstance(commands, str):
            commands = json.loads(commands)
        for command in commands:
            if "description" not in command:
                raise ApiError(400, "Bad Request: can't parse BotCommand: Can't find field \"description\"")
            name = str(command.get("command", "")).strip().removeprefix("/")
            if not _COMMAND.fullmatch(name) or not 1 <= len(str(command["description"]).strip()) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        with self.lock:
            self.commands = list(commands)
        return True

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        with self.lock:
            issued = any(u.get("callback_query", {}).get("id") == query_id for u in self.updates)
            if not issued or query_id in self.answers:
                raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
            text = str(params.get("text") or "")
            if len(text) > 200:
                raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
            self.answers[query_id] = dict(params)
        return True

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            chat = self.chat(params.get("chat_id"))
            message_id = int(params.get("message_id") or 0)
            message = next((m for m in self.messages if m.chat_id == chat["id"] and m.message_id == message_id), None)
            if message is None:
                raise ApiError(400, "Bad Request: message to edit not found")
            text = str(params.get("text") or "")
            mode = params.get("parse_mode")
            visible = parse_html(text) if str(mode).lower() == "html" else text
            if not visible.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            if len(visible) > 4096:
                raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
            markup = self._reply_markup(params)
            if visible == message.text and markup == message.reply_markup:
                raise ApiError(
                    400,
                    "Bad Request: message is not modified: specified new message content and reply markup are "
                    "exactly the same as a current content and reply markup of the message",
                )
            message.edits.append(message.text)
            message.text, message.submitted, message.parse_mode, message.reply_markup = visible, text, mode, markup
            return {"message_id": message.message_id, "date": int(message.date), "chat": chat, "text": visible}
