"""Redaction of secrets and personal data in text, structures and log records.

Contract:

* `redact(text)` returns `text` with every recognised secret replaced by a mask. Masks keep at most a
  short, non-secret, recognisable prefix (`sk-proj-****`, `homa_sk_****`, `Bearer ****`, `AKIA****`,
  `****@example.com`, `****1111` for a card whose last four digits end the digit run) and never any
  part of the secret beyond that. `redact` is idempotent: `redact(redact(t)) == redact(t)`.
* Recognised: Homa API keys (`homa_sk_…`), bearer and basic credentials, any `Authorization:` or
  `Cookie:` header value, JWTs (three or five base64url segments starting with `eyJ`), OpenAI
  (`sk-…`, `sk-proj-…`), Anthropic (`sk-ant-…`), Google (`AIza…`), GitHub, Slack and Stripe tokens,
  PEM private-key blocks (to their END line or the end of the text), AWS access key ids
  (`AKIA…`/`ASIA…`) and secret keys after `aws_secret_access_key=`, credentials in URL userinfo,
  values after `password=`/`secret=` (any length) and long values after `…key=`/`…token=` (16+
  characters), e-mail addresses, and card numbers (13-19 digits, optional single spaces or dashes
  between digit groups, masked only when the Luhn check passes so that order numbers and ids survive;
  a single unseparated run of 20+ digits is an id, not a card).
* Exact secrets registered with `register_secret` (configured provider keys, for example) are masked
  wherever they appear, even when they match no pattern. The output never contains a registered secret.
* `redact_mapping(obj)` returns a redacted copy of nested dicts/lists/tuples/sets: values under sensitive
  keys (`authorization`, `api_key`, `x-api-key`, `password`, `token`, `cookie`, …) are replaced by
  `****` whole, every other string is passed through `redact`. The input is not modified.
* `RedactingFilter` is a `logging.Filter` that redacts a record's rendered message, its `extra=` fields,
  formatted exception text and stack info in place; attach it to every handler.

All regular expressions are compiled once at import; patterns whose literal trigger (`sk-`, `@`, …) is
absent from the text are skipped, so a typical log line costs a few microseconds.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar, cast

__all__ = [
    "MASK",
    "SENSITIVE_KEYS",
    "RedactingFilter",
    "Redactor",
    "clear_registered_secrets",
    "default_redactor",
    "is_sensitive_key",
    "redact",
    "redact_mapping",
    "register_secret",
]

MASK: Final = "****"
"""The string that replaces a secret (or the secret part of a token)."""

MIN_REGISTERED_SECRET_LENGTH: Final = 8
"""Shorter exact secrets are refused: masking them would shred ordinary text."""

SENSITIVE_KEYS: Final = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "api_key",
        "apikey",
        "x_api_key",
        "x_goog_api_key",
        "password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "session_token",
        "x_amz_security_token",
        "aws_secret_access_key",
        "private_key",
        "cookie",
        "set_cookie",
        "credentials",
    }
)
"""Mapping keys (lower case, `-` read as `_`) whose values are masked whole by `redact_mapping`."""

_SENSITIVE_SUFFIXES: Final = ("_token", "_secret", "_password", "api_key", "apikey")

_T = TypeVar("_T")
_MAX_PASSES: Final = 6


@dataclass(frozen=True, slots=True)
class _Rule:
    """One pattern, applied only if one of `triggers` occurs in the text (lower-cased if `fold`).

    `replace(source, match)` returns the replacement for `match`, whose offsets index `source`. Folding
    rules are written in lower case; on ASCII text they run case-sensitively over `text.lower()` (much
    faster than `re.IGNORECASE`) and the spans are applied to the original text.
    """

    name: str
    pattern: re.Pattern[str]
    replace: Callable[[str, re.Match[str]], str]
    triggers: tuple[str, ...]
    fold: bool = False
    hint: re.Pattern[str] | None = None  # a cheap pre-search that must succeed first
    folded: re.Pattern[str] | None = None  # the case-sensitive twin of a folding rule


def _rule(
    name: str,
    source: str,
    replace: Callable[[str, re.Match[str]], str],
    triggers: tuple[str, ...],
    *,
    fold: bool = False,
    hint: str | None = None,
) -> _Rule:
    return _Rule(
        name,
        re.compile(source, re.IGNORECASE if fold else 0),
        replace,
        triggers,
        fold,
        re.compile(hint) if hint else None,
        re.compile(source) if fold else None,
    )


def _keep_prefix(source: str, match: re.Match[str]) -> str:
    return source[match.start(1) : match.end(1)] + MASK


def _userinfo(source: str, match: re.Match[str]) -> str:
    return MASK + ":" + MASK + "@"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_DIGIT_GROUP: Final = re.compile(r"[0-9]+")


def _mask_card(source: str, match: re.Match[str]) -> str:
    """Mask Luhn-valid card numbers inside one run of digit groups (single spaces/dashes between).

    From each group, the longest window of whole groups holding 13-19 digits that passes Luhn is masked;
    scanning resumes after it. The last four digits are kept only when the window ends the run, so a
    second pass never sees a new candidate (idempotence).
    """
    run = source[match.start() : match.end()]
    groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(run)]
    pieces: list[str] = []
    last = 0
    i = 0
    while i < len(groups):
        found = -1
        digits = 0
        ends: list[int] = []
        for j in range(i, len(groups)):
            digits += groups[j][1] - groups[j][0]
            if digits > 19:
                break
            if digits >= 13:
                ends.append(j)
        for j in reversed(ends):
            window = run[groups[i][0] : groups[j][1]]
            if _luhn_ok(window.replace(" ", "").replace("-", "")):
                found = j
                break
        if found < 0:
            i += 1
            continue
        start, end = groups[i][0], groups[found][1]
        pieces.append(run[last:start])
        ends_run = found == len(groups) - 1 and run[end - 4 : end].isdigit()
        pieces.append(MASK + run[end - 4 : end] if ends_run else MASK)
        last = end
        i = found + 1
    if not pieces:
        return run
    pieces.append(run[last:])
    return "".join(pieces)


def _mask_email(source: str, match: re.Match[str]) -> str:
    return MASK + "@" + source[match.start(1) : match.end(1)]


# A token may not start in the middle of an identifier (`task-…` is not an OpenAI key).
_NB = r"(?<![A-Za-z0-9])"
_ASSIGN = r"""["']?[ \t]*+[=:][ \t]*+["']?"""  # possessive: a value never starts with a blank
_AUTH_SCHEMES = (
    r"bearer|basic|token|digest|negotiate|ntlm|dpop|apikey|api-key|sharedkey|ssws|hmac|mac|oauth"
    r"|aws4-hmac-sha256"
)

_RULES: Final[tuple[_Rule, ...]] = (
    _rule("homa_api_key", _NB + r"(homa_sk_)[A-Za-z0-9_\-]{8,}", _keep_prefix, ("homa_sk_",)),
    _rule("anthropic_key", _NB + r"(sk-ant-)[A-Za-z0-9_\-]{8,}", _keep_prefix, ("sk-ant-",)),
    _rule(
        "openai_key",
        _NB + r"(sk-(?:proj-|svcacct-|admin-)?)(?=[A-Za-z_\-]*[0-9])[A-Za-z0-9_\-]{20,}",
        _keep_prefix,
        ("sk-",),
    ),
    _rule(
        "other_vendor_token",  # GitHub, Slack, Stripe: well-known prefixes, kept for recognition
        _NB + r"((?:gh[pousr]_|github_pat_|xox[abprs]-|(?:sk|rk)_live_))[A-Za-z0-9_\-]{16,}",
        _keep_prefix,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "_live_"),
    ),
    _rule(
        "pem_private_key",
        r"(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)(?!\*{4})[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        _keep_prefix,
        ("PRIVATE KEY-----",),
    ),
    _rule("google_key", _NB + r"(AIza)[0-9A-Za-z_\-]{30,}", _keep_prefix, ("AIza",)),
    _rule(
        "aws_access_key_id",
        _NB + r"((?:AKIA|ASIA))[0-9A-Z]{16}(?![A-Za-z0-9])",
        _keep_prefix,
        ("AKIA", "ASIA"),
    ),
    _rule(
        "aws_secret_access_key",
        r"(aws_secret_access_key" + _ASSIGN + r")[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
        _keep_prefix,
        ("aws_secret_access_key",),
        fold=True,
    ),
    _rule(
        "bearer",  # header spelling: any 8+ character credential
        _NB + r"((?:Bearer|Basic|BEARER|BASIC)[ \t]+)[A-Za-z0-9\-._~+/]{8,}=*",
        _keep_prefix,
        ("Bearer", "Basic", "BEARER", "BASIC"),
    ),
    _rule(
        "bearer_any_case",  # other spellings: only credential-like words (a digit or symbol), not prose
        _NB + r"((?:bearer|basic)[ \t]+)(?=[a-z]*[0-9\-._~+/=])[A-Za-z0-9\-._~+/]{8,}=*",
        _keep_prefix,
        ("bearer", "basic"),
        fold=True,
    ),
    _rule(
        "jwt",  # JWS (3 segments) or JWE (5 segments)
        _NB + r"(eyJ)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*){0,2}",
        _keep_prefix,
        ("eyJ",),
    ),
    _rule(
        # Whole header value up to a delimiter; a well-known scheme (Token, Digest, ...) is kept.
        "authorization_header",
        r"((?:proxy-)?authorization" + _ASSIGN + r"(?>(?:(?:" + _AUTH_SCHEMES + r")[ \t]+)?))"
        r"(?!\*{4})[^\s\"',;](?:[^\r\n\"',;]*[^\s\"',;])?",
        _keep_prefix,
        ("authorization",),
        fold=True,
    ),
    _rule(
        "cookie_header",  # every `name=value` pair of a Cookie / Set-Cookie value
        r"((?:set-)?cookie" + _ASSIGN + r")(?!\*{4})[^\s\"',;]+(?:;[ \t]*[^\s\"',;]+)*",
        _keep_prefix,
        ("cookie",),
        fold=True,
    ),
    _rule("url_userinfo", r"(?<=://)[^/\s:@]+:[^/\s@]+@", _userinfo, ("://",)),
    _rule(
        "password_value",
        r"((?:pass(?:word|wd|phrase)|pwd|secret)" + _ASSIGN + r")(?!\*{4})[^\s\"'&,;]+",
        _keep_prefix,
        ("pass", "pwd", "secret"),
        fold=True,
    ),
    _rule(
        "key_value",
        r"((?:key|token|credential|signature|session(?:_?id)?)" + _ASSIGN + r")[A-Za-z0-9+/_\-.~=%]{16,}",
        _keep_prefix,
        ("key", "token", "credential", "signature", "session"),
        fold=True,
    ),
    _rule(
        "email",
        r"(?<![A-Za-z0-9._%+\-@])[A-Za-z0-9._%+\-]+@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})",
        _mask_email,
        ("@",),
    ),
    _rule(
        "card_number",
        r"(?<![0-9])(?=(?:[0-9][ \-]?){12}[0-9])[0-9](?:[ \-]?[0-9])*",
        _mask_card,
        (),
        hint=r"[0-9][0-9 \-]{11,}[0-9]",
    ),
)


def _apply(rule: _Rule, text: str, folded: str) -> str:
    """Apply one rule to `text` (`folded` is `text.lower()` when the rule folds, else unused)."""
    if rule.folded is not None and text.isascii():
        pattern, target = rule.folded, folded
    else:
        pattern, target = rule.pattern, text
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(target):
        pieces.append(text[last : match.start()])
        pieces.append(rule.replace(text, match))
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _normalise_key(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def is_sensitive_key(key: object) -> bool:
    """Whether a mapping key names a credential (case-insensitive, `-` and `_` equivalent)."""
    if not isinstance(key, str):
        return False
    name = _normalise_key(key)
    return name in SENSITIVE_KEYS or name.endswith(_SENSITIVE_SUFFIXES)


class Redactor:
    """Pattern redaction plus a registry of exact secrets; thread-safe, cheap to call.

    Most code uses the module-level functions, which share `default_redactor`; tests build their own
    instance so that registered secrets do not leak between them.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._secret_pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.register_secret(secret)

    def register_secret(self, value: str) -> None:
        """Mask `value` wherever it appears from now on.

        Raises:
            ValueError: `value` is shorter than 8 characters or contains no letter or digit (masking it
                would destroy ordinary text); the message never contains the value.
        """
        if len(value) < MIN_REGISTERED_SECRET_LENGTH or not any(c.isalnum() for c in value):
            raise ValueError(
                f"refusing to register a secret shorter than {MIN_REGISTERED_SECRET_LENGTH} characters "
                "or without letters or digits"
            )
        with self._lock:
            if value in self._secrets:
                return
            self._secrets = self._secrets | {value}
            ordered = sorted(self._secrets, key=len, reverse=True)  # longest first: no partial leftovers
            self._secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def clear_secrets(self) -> None:
        """Forget every registered secret (for tests and settings reloads)."""
        with self._lock:
            self._secrets = frozenset()
            self._secret_pattern = None

    def _mask_registered(self, text: str) -> str:
        pattern = self._secret_pattern
        if pattern is None:
            return text
        for secret in self._secrets:  # `in` is a fast C search; the regex runs only on a hit
            if secret in text:
                break
        else:
            return text
        # Repeat until stable: removing one occurrence can join the pieces of another.
        while True:
            masked = pattern.sub(MASK, text)
            if masked == text:
                return masked
            text = masked

    def redact(self, text: str) -> str:
        """Return `text` with registered secrets and recognised credentials and personal data masked.

        Passes repeat until the text is stable (masking one thing can change another's boundaries), so
        the result is a fixed point; text without secrets costs a single pass.
        """
        text = self._mask_registered(text)
        for _ in range(_MAX_PASSES):
            masked = self._pass(text)
            if masked == text:
                break
            text = self._mask_registered(masked)
        return text

    def _pass(self, text: str) -> str:
        folded = ""
        folded_valid = False
        for rule in _RULES:
            if rule.fold and not folded_valid:
                folded, folded_valid = text.lower(), True
            if rule.triggers:
                haystack = folded if rule.fold else text
                for trigger in rule.triggers:
                    if trigger in haystack:
                        break
                else:
                    continue
            if rule.hint is not None and rule.hint.search(text) is None:
                continue
            masked = _apply(rule, text, folded)
            if masked != text:
                text = masked
                folded_valid = False
        return text

    def redact_mapping(self, obj: _T) -> _T:
        """Return a redacted deep copy of `obj` (dicts, lists, tuples, sets, strings; other leaves as-is).

        Values under sensitive keys (`is_sensitive_key`) become `MASK` whatever their type; strings
        elsewhere go through `redact`. Keys are kept unchanged.
        """
        return cast(_T, self._walk(obj, depth=0))

    def _walk(self, obj: object, depth: int) -> object:
        if isinstance(obj, str):
            return self.redact(obj)
        if depth > 64:  # pathological nesting: refuse to copy further, keep nothing
            return MASK
        if isinstance(obj, Mapping):
            return {
                key: (MASK if is_sensitive_key(key) else self._walk(value, depth + 1))
                for key, value in obj.items()
            }
        if isinstance(obj, list):
            return [self._walk(item, depth + 1) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self._walk(item, depth + 1) for item in obj)
        if isinstance(obj, set | frozenset):
            return {self._walk(item, depth + 1) for item in obj}
        if isinstance(obj, bytes | bytearray):
            return self.redact(bytes(obj).decode("utf-8", "replace")).encode()
        return obj


default_redactor: Final = Redactor()
"""The process-wide redactor used by the module-level functions and `RedactingFilter` by default."""


def redact(text: str) -> str:
    """`Redactor.redact` on the process-wide redactor."""
    return default_redactor.redact(text)


def redact_mapping(obj: _T) -> _T:
    """`Redactor.redact_mapping` on the process-wide redactor."""
    return default_redactor.redact_mapping(obj)


def register_secret(value: str) -> None:
    """Register an exact secret (a configured provider key, say) with the process-wide redactor."""
    default_redactor.register_secret(value)


def clear_registered_secrets() -> None:
    """Forget the process-wide registered secrets."""
    default_redactor.clear_secrets()


# Attributes every LogRecord has; anything else came from `extra=`.
_STANDARD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
}
_PLAIN: Final = (int, float, bool, type(None))
_exception_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """A `logging.Filter` that redacts records in place and always lets them through.

    * the message is rendered (`msg % args`) and redacted; `args` is cleared afterwards;
    * `extra=` fields: strings redacted, dicts/lists via `redact_mapping`, fields with sensitive names
      masked whole, numbers/bools/None kept, any other object replaced by its redacted `str()`;
    * `exc_info` is formatted, redacted into `exc_text` and cleared (formatters print `exc_text`);
      `stack_info` is redacted.

    Attach it to handlers (`handler.addFilter(RedactingFilter())`), not loggers: logger filters do not
    see records propagated from child loggers. Redaction is idempotent, so several handlers sharing a
    record are harmless.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._redactor = redactor if redactor is not None else default_redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact `record` in place; return True (never drops a record)."""
        redactor = self._redactor
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller; keep what we can, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redactor.redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_ATTRS:
                continue
            if is_sensitive_key(key):
                record.__dict__[key] = MASK
            elif isinstance(value, str):
                record.__dict__[key] = redactor.redact(value)
            elif isinstance(value, Mapping | list | tuple | set | frozenset):
                record.__dict__[key] = redactor.redact_mapping(value)
            elif not isinstance(value, _PLAIN):
                record.__dict__[key] = redactor.redact(str(value))
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = _exception_formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True
