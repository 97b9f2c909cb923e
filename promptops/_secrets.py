"""Keeping secrets out of MLflow, logs and printed errors.

API keys live only in the environment: a prompt file that holds one is refused when it is read
(`credential_in`). Anything promptops writes or prints that could echo one (an error from a
provider or a tool, a parameter map, a prompt file copied into MLflow, a trace) passes through
`redact` first.

What counts as a secret is decided by one detector (`find_secrets`), in this order:
- the values of environment variables whose names say they are secrets (`OPENAI_API_KEY`, `HF_TOKEN`);
- gitleaks' rule set (promptops/_gitleaks/gitleaks.toml, MIT, vendored unchanged): about 220 rules,
  each with keywords, a regular expression, an entropy floor and allowlists, applied as gitleaks
  applies them. Its rules end a token at a quote, a space or `;`, as in source code; here they also
  end it at prose punctuation (`.`, `,`, `)`...), since promptops scrubs messages and JSON;
- promptops' own rules: LLM provider key prefixes (`sk-`, `sk-ant-`), credentials in a URL,
  `Bearer`/`Basic` values, `key=value` / `key: value` where the key names a secret (password,
  passwd, pwd, secret, token, api_key...), and long tokens of high entropy that mix upper case,
  lower case and digits (never pure hex: commit SHAs, content hashes, run and trace ids and UUIDs
  are kept).

Each rule runs only when one of its keywords is in the lower-cased text (an Aho-Corasick automaton, as in
gitleaks, finds them all in one pass); a rule's expression is compiled the first time one of its keywords
is seen, and the rules whose keywords are common words are tried only where the keyword starts.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

# Names that end like a credential: OPENAI_API_KEY, HF_TOKEN, client_secret, GPG_PASSPHRASE; not max_tokens, not PWD.
SECRET_NAME = re.compile(r"(API[_-]?KEY|ACCESS[_-]?KEY|PRIVATE[_-]?KEY|SECRET|PASSWORD|PASSWD|PASSPHRASE|(^|_)TOKEN)$", re.IGNORECASE)
# Header names that carry credentials: Authorization, Proxy-Authorization, Cookie, X-Auth-Token, X-Api-Key.
_SECRET_HEADER = re.compile(r"(authorization|cookie|(^|[-_])(auth|token|api[-_]?key)$)", re.IGNORECASE)
# `scheme://user:password@host` (or `scheme://token@host`): credentials inside a URL.
_URL_CREDENTIALS = re.compile(r"\b([a-z][a-z0-9+.\-]*://)([^/\s@]+)@", re.IGNORECASE)
MASK = "***"

RULES_FILE = Path(__file__).with_name("_gitleaks") / "gitleaks.toml"


# --- the detector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A secret in a text: where it is (`text[start:end]`) and the rule that found it."""

    start: int
    end: int
    rule: str

class _Allowlist:
    """One of a gitleaks rule's allowlists: a finding is kept (not a secret) when a regex matches its target
    (the secret, the whole match or its line) or the secret holds a stopword."""

    def __init__(self, spec: dict[str, Any]):
        self.target = spec.get("regexTarget", "secret")
        # An AND condition with paths can never hold here: promptops scrubs texts, not files.
        self.usable = not (spec.get("condition") == "AND" and spec.get("paths"))
        self._sources = tuple(spec.get("regexes", ()))
        self.stopwords = tuple(word.lower() for word in spec.get("stopwords", ()))

    @functools.cached_property
    def regexes(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(go_pattern(source)) for source in self._sources)

    def allows(self, secret: str, match: str, line: str) -> bool:
        if not self.usable:
            return False
        target = {"match": match, "line": line}.get(self.target, secret)
        if any(regex.search(target) for regex in self.regexes):
            return True
        lowered = secret.lower()
        return any(word in lowered for word in self.stopwords)


class _Rule:
    """A gitleaks rule: keywords (any one lets the rule run), a regex compiled on first use, the capture group that
    is the secret, an entropy floor and allowlists; or one of promptops' rules, which may add a `keep` test.

    An `anchored` rule's regex begins with its keyword, so it is tried only where one of its keywords starts (rather
    than at every position of the text); `lead` is how many name characters (`[\\w.-]`) before the keyword belong
    to the match, as the `[\\w.-]{0,50}?` that starts gitleaks' keyword rules.
    """

    def __init__(self, rule_id: str, source: str, keywords: Iterable[str], *, entropy: float = 0.0, secret_group: int = 0,
                 allowlists: Iterable[_Allowlist] = (), flags: int = re.ASCII, anchored: bool = False, lead: int = 0,
                 keep: Optional[Callable[[re.Match[str], str, str], bool]] = None, value_groups: tuple[str, ...] = (),
                 gitleaks: bool = True):
        self.id, self.source, self.flags = rule_id, source, flags
        self.keywords = tuple(keyword.lower() for keyword in keywords)
        self.entropy, self.secret_group = entropy, secret_group
        self.allowlists = tuple(allowlists)
        self.anchored, self.lead = anchored, lead
        self.keep, self.value_groups, self.gitleaks = keep, value_groups, gitleaks

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(go_pattern(self.source) if self.gitleaks else self.source, self.flags)

    def matches(self, text: str, lowered: str, starts: dict[str, list[int]]) -> Iterable[re.Match[str]]:
        """The rule's matches: a scan of the text, or for an anchored rule, a try where each of its keywords starts
        (`starts`: keyword → where it starts in the lower-cased text)."""
        if not self.anchored or len(lowered) != len(text):  # lower() changed the length: positions would not line up
            yield from self.pattern.finditer(text)
            return
        seen = set()
        for position in sorted({position for keyword in self.keywords for position in starts.get(keyword, ())}):
            match = self.pattern.match(text, position)
            if match is not None and match.span() not in seen:
                seen.add(match.span())
                yield match

    def findings(self, text: str, lowered: str, starts: dict[str, list[int]],
                 global_allowlist: Optional[_Allowlist]) -> Iterable[Finding]:
        for match in self.matches(text, lowered, starts):
            start, end = self._secret_span(match)
            if start >= end:
                continue
            secret = text[start:end]
            if self.entropy and shannon_entropy(secret) <= self.entropy:
                continue
            whole = text[self._lead_start(text, match.start()):match.end()]
            if self.keep is not None and self.keep(match, secret, whole):
                continue
            if self.gitleaks and (self.allowlists or global_allowlist):
                line = _line_of(text, match.start(), match.end())
                if global_allowlist is not None and global_allowlist.allows(secret, whole, line):
                    continue
                if any(allowlist.allows(secret, whole, line) for allowlist in self.allowlists):
                    continue
            yield Finding(start, end, self.id)

    def _lead_start(self, text: str, start: int) -> int:
        first = start
        while first > 0 and start - first < self.lead and (text[first - 1].isalnum() or text[first - 1] in "_.-"):
            first -= 1
        return first

    def _secret_span(self, match: re.Match[str]) -> tuple[int, int]:
        """As gitleaks: the `secretGroup`, else the first capture group that matched something, else the whole match
        (less the newlines at its ends); for promptops' rules, the first of its named `value_groups` that matched."""
        for name in self.value_groups:
            if match.group(name) is not None:
                return match.span(name)
        if self.secret_group and match.re.groups >= self.secret_group:
            return match.span(self.secret_group)
        for group in range(1, match.re.groups + 1):
            start, end = match.span(group)
            if end > start:
                return start, end
        start, end = match.span()
        text = match.string
        while start < end and text[start] == "\n":
            start += 1
        while end > start and text[end - 1] == "\n":
            end -= 1
        return start, end


def _line_of(text: str, start: int, end: int) -> str:
    return text[text.rfind("\n", 0, start) + 1: (text.find("\n", end) + 1 or len(text) + 1) - 1]


def shannon_entropy(text: str) -> float:
    """Bits per character, as gitleaks computes it."""
    if not text:
        return 0.0
    length = len(text)
    return -sum(count / length * math.log2(count / length) for count in (text.count(char) for char in set(text)))


# gitleaks' rules end a token where source code would (a quote, white space, `;`, an escaped newline or the end);
# promptops scrubs messages, errors and JSON, where a token also ends at prose punctuation or a backslash.
_GITLEAKS_TOKEN_END = r"""(?:[\x60'"\s;]|\\[nr]|$)"""
_TOKEN_END = r"""(?:[\x60'"\s;.,:!?)\]}>|&\\]|$)"""
_POSIX_CLASSES = {"alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "lower": "a-z", "upper": "A-Z",
                  "xdigit": "0-9a-fA-F", "space": r"\s", "word": r"\w", "punct": r"!-/:-@\[-`{-~"}
_FLAG_GROUP = re.compile(r"\(\?([a-zA-Z]*-?[a-zA-Z]*)\)")


def go_pattern(pattern: str) -> str:
    """A gitleaks (Go RE2) expression in Python's syntax.

    Go lets `(?i)` appear mid-expression, turning the flag on to the end of the enclosing group; Python only
    at the start, so it becomes a scoped `(?i:...)` closed at the group's end (and around each alternative).
    Also: POSIX classes (`[[:alnum:]]`), `\\z`, and the wider token end (`_TOKEN_END`).
    """
    pattern = pattern.replace(_GITLEAKS_TOKEN_END, _TOKEN_END)
    out: list[str] = []
    scopes: list[list[str]] = [[]]  # per open group: the flags opened inside it, to close at its end or at a `|`
    index, length = 0, len(pattern)
    while index < length:
        char = pattern[index]
        if char == "\\":
            escape = pattern[index:index + 2]
            out.append(r"\Z" if escape == r"\z" else escape)
            index += 2
        elif char == "[":
            end = index + 1
            if pattern.startswith("^", end):
                end += 1
            if pattern.startswith("]", end):
                end += 1
            parts = ["[", pattern[index + 1:end]]
            while end < length and pattern[end] != "]":
                if pattern[end] == "\\":
                    parts.append(pattern[end:end + 2])
                    end += 2
                elif pattern.startswith("[:", end) and ":]" in pattern[end:]:
                    close = pattern.index(":]", end)
                    parts.append(_POSIX_CLASSES[pattern[end + 2:close]])
                    end = close + 2
                else:
                    if pattern[end] == "[":
                        parts.append("\\")  # a literal `[` in a class, which Python would warn about
                    parts.append(pattern[end])
                    end += 1
            out.append("".join(parts) + "]")
            index = end + 1
        elif char == "(" and (flags := _FLAG_GROUP.match(pattern, index)) and (index > 0 or len(scopes) > 1):
            out.append(f"(?{flags.group(1)}:")
            scopes[-1].append(flags.group(1))
            index = flags.end()
        elif char == "(":
            scopes.append([])
            out.append(char)
            index += 1
        elif char == ")":
            out.append(")" * len(scopes.pop()) + ")")
            index += 1
        elif char == "|" and scopes[-1]:
            out.append(")" * len(scopes[-1]) + "|" + "".join(f"(?{flag}:" for flag in scopes[-1]))
            index += 1
        else:
            out.append(char)
            index += 1
    out.append(")" * len(scopes.pop()))
    return "".join(out)


# --- promptops' own rules --------------------------------------------------------------------------

# Values that stand for a secret without being one: a mask, a template variable, an empty or null value.
_PLACEHOLDER = re.compile(r"^(?:\*+|x+|\.+|<[^>]*>|\[[A-Z_]+\]|\$\{.*|\$[A-Z_]+|\{\{.*|%\(?\w*\)?s"
                          r"|null|none|nil|true|false|redacted|changeme)$", re.IGNORECASE)
# Key names that say the value is a secret, at the end of the key: db_password, client_secret, X-Api-Key, HF_TOKEN.
# Each is a keyword of the rule, and the rule's regex begins with it (the rule is anchored).
_SECRET_KEYS = ("password", "passwd", "passphrase", "pwd", "secret", "token", "api_key", "api-key", "apikey", "access_key",
                "access-key", "accesskey", "secret_key", "secret-key", "secretkey", "private_key", "private-key", "privatekey",
                "auth_key", "authkey", "credential", "credentials")
_ASSIGNMENT_NAME_CHARS = 40  # how much of a name before the keyword belongs to it (`aws_secret_access_key`)
_ASSIGNMENT = (
    r"(?:{keys})(?![\w-])[\"']?[ \t]{{0,4}}"
    r"(?P<sep>:=|=>|->|=|:)[ \t]{{0,4}}"
    r"""(?:"(?P<double>[^"\n]{{1,200}})"|'(?P<single>[^'\n]{{1,200}})'|(?P<bare>(?:[^\s"'`,;&}}\])]|&(?![\w.-]+=)){{1,200}}))"""
)
_ENVIRONMENT_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
_TRAILING_PUNCTUATION = ".,;:!?)]}>"
# Words that own a token when glued to it (`authtoken`, `refreshtoken`); after another word, "token" is a word's end.
_TOKEN_OWNERS = ("auth", "access", "refresh", "api", "session", "bearer", "bot", "user", "app", "client", "id", "csrf")
_SENTENCE_GOES_ON = re.compile(r" [a-z]+\b")  # after `key: word`, another word: prose
# Key names that are also words of prose ("Password: forgotten"): after them, `: word` is read as prose.
_PROSE_NAMES = frozenset({"password", "passphrase", "secret", "token", "credential", "credentials"})


def _keep_assignment(match: re.Match[str], value: str, whole: str) -> bool:
    """Whether `key=value` / `key: value` is no credential after all: a placeholder, a name, a count, a word of prose."""
    value = value.rstrip(_TRAILING_PUNCTUATION) if match.group("bare") else value
    if len(value) < 3 or _PLACEHOLDER.match(value) or MASK in value:
        return True
    if "(" in value or "[" in value or value.lower() in _SECRET_KEYS or _ENVIRONMENT_NAME.fullmatch(value):
        return True  # `token = entry[slot]`, `token = _TASK.set(task)`, `page_token=token`, `api_key: OPENAI_API_KEY`: names
    name = whole[: len(whole) - (match.end() - match.start("sep"))].lower()
    lead = whole[: len(whole) - len(match.group(0))]
    if "public" in lead.lower() or "publishable" in lead.lower():
        return True  # public_key, publicToken, publishable_key: meant to be seen
    if match.group(0)[:5].lower() == "token" and lead[-1:].islower() and match.group(0)[0].islower() \
            and not lead.lower().endswith(_TOKEN_OWNERS):
        return True  # io.jsonwebtoken:jjwt: a word that ends in "token", not a token's name
    if value.isdigit() and len(value) <= 6 and not re.search(r"pass|pwd", name):
        return True  # max_token=512: a count, not a key
    if name.endswith("pwd") and value.startswith(("/", "~")):
        return True  # PWD=/home/ada: the shell's working directory
    if match.group("bare") is None or match.group("sep") != ":":
        return False  # quoted, or an assignment (`=`): a value as written
    if value.isalpha() and _SENTENCE_GOES_ON.match(match.string, match.end()):
        return True  # `model.params.api_key: looks like a secret`: a sentence, not a setting
    if name.strip("\"' \t") not in _PROSE_NAMES:
        return False  # a setting's name (db_password, pwd): a value as written
    # `password: word` in prose: a secret only if it has a digit or a symbol, or mixes cases past its first letter.
    has_digit = any(char.isdigit() for char in value)
    has_symbol = any(not char.isalnum() for char in value)
    mixed_case = any(char.isupper() for char in value[1:]) and any(char.islower() for char in value)
    return not (has_digit or has_symbol or mixed_case)


# A long token of base64 or base64url characters: what a random key looks like when nothing names it.
_TOKEN = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{20,}={0,2}(?![\w+/=-])")
_NAME_PART = re.compile(r"(?:[A-Z]?[a-z]{2,})+[0-9]*")  # `Instruct`, `KeyMeshing`, `Gost28147`
_HEX_ID = re.compile(r"^(?:[a-z]{1,4}[-_])?[0-9a-fA-F-]+$")  # a SHA, a content hash, a run id, tr-<hex>, a UUID


def _class_of(char: str) -> int:
    return 0 if char.islower() else 1 if char.isupper() else 2 if char.isdigit() else 3


def _keep_token(token: str) -> bool:
    """Whether a long token is no secret: pure hex (an id), one or two character classes, words (few switches between
    lower case, upper case and digits, as in `Base64HighEntropyString`), a path, or base64 of readable text."""
    if _HEX_ID.match(token):
        return True
    body = token.rstrip("=")
    classes = [_class_of(char) for char in body]
    if not (0 in classes and 1 in classes and 2 in classes):
        return True
    switches = sum(1 for a, b in zip(classes, classes[1:]) if a != b) / (len(classes) - 1)
    if switches < 0.38 or shannon_entropy(body) < 3.5:
        return True
    parts = re.split(r"[-_/+]", body)
    if len(parts) >= 3 and all(len(part) <= 8 or _NAME_PART.fullmatch(part) for part in parts):
        return True  # words and short pieces between separators: a path, a model (`SmolLM2-135M-Instruct-Q4_1`)
    return _readable_base64(token)


def _readable_base64(token: str) -> bool:
    """Whether the token is base64 of ordinary text (an encoded sentence is no key)."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_" if ("-" in token or "_" in token) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 8:
        return False
    printable = sum(1 for byte in raw if 32 <= byte < 127 or byte in (9, 10, 13))
    return printable / len(raw) >= 0.95 and sum(1 for byte in raw if chr(byte).isalpha() or byte == 32) / len(raw) >= 0.7


def _keep_url_user(match: re.Match[str], userinfo: str, whole: str) -> bool:
    """`postgresql://postgres@host`: a bare user name is no credential; `user:password@` or `TOKEN@` is."""
    return ":" not in userinfo and len(userinfo) < 16 and re.fullmatch(r"[A-Za-z][\w.-]*", userinfo) is not None


def _own_rules() -> list[_Rule]:
    return [
        # LLM providers' keys, whatever their exact length: the keys promptops is most likely to meet.
        _Rule("llm-provider-key", r"\b(sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{8,})", ("sk-",), gitleaks=False),
        _Rule("url-credentials", _URL_CREDENTIALS.pattern, ("://",), flags=re.IGNORECASE, secret_group=2, gitleaks=False,
              keep=_keep_url_user),
        # `Bearer abc...`, `Basic dXNl...`: a value with a digit, so "Basic questions" stays.
        _Rule("authorization-value", r"\b(?:Bearer|Basic|bearer|basic|Token)\s+((?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,})",
              ("bearer", "basic", "token"), gitleaks=False),
        _Rule("secret-assignment", _ASSIGNMENT.format(keys="|".join(sorted(map(re.escape, _SECRET_KEYS), key=len, reverse=True))),
              _SECRET_KEYS,
              flags=re.IGNORECASE | re.ASCII, anchored=True, lead=_ASSIGNMENT_NAME_CHARS, keep=_keep_assignment,
              value_groups=("double", "single", "bare"), gitleaks=False),
    ]


_TOKEN_RULE = "high-entropy-token"


class Detector:
    """gitleaks' rules and promptops' own, behind one keyword prefilter: an Aho-Corasick automaton (as gitleaks
    uses) finds every keyword of every rule in one pass over the lower-cased text."""

    def __init__(self, rules: list[_Rule], global_allowlist: Optional[_Allowlist]):
        import ahocorasick

        self.rules = rules
        self.global_allowlist = global_allowlist
        self.rules_by_keyword: dict[str, list[_Rule]] = {}
        for rule in rules:
            for keyword in rule.keywords:
                self.rules_by_keyword.setdefault(keyword, []).append(rule)
        self.keywords = ahocorasick.Automaton()
        for keyword in self.rules_by_keyword:
            self.keywords.add_word(keyword, keyword)
        self.keywords.make_automaton()

    @classmethod
    def from_file(cls, path: Path = RULES_FILE) -> "Detector":
        with path.open("rb") as handle:
            config = tomllib.load(handle)
        rules = [_gitleaks_rule(spec) for spec in config.get("rules", ()) if spec.get("regex") and spec.get("keywords")]
        allowlist = config.get("allowlist")
        return cls(rules + _own_rules(), _Allowlist(allowlist) if allowlist else None)

    def find(self, text: str) -> list[Finding]:
        """Every secret in the text, in order, overlapping ones merged."""
        found: list[Finding] = []
        lowered = text.lower()
        starts: dict[str, list[int]] = {}
        for end, keyword in self.keywords.iter(lowered):
            starts.setdefault(keyword, []).append(end - len(keyword) + 1)
        if starts:
            rules = {id(rule): rule for keyword in starts for rule in self.rules_by_keyword[keyword]}
            for rule in rules.values():
                found.extend(rule.findings(text, lowered, starts, self.global_allowlist))
        if len(text) >= 20:
            for match in _TOKEN.finditer(text):
                if not _keep_token(match.group(0)):
                    found.append(Finding(match.start(), match.end(), _TOKEN_RULE))
        return _merged(found)


# gitleaks' keyword rules start `(?i)[\w.-]{0,50}?(?:KEYWORDS)...`; the lead only moves the match's start. The two that
# ordinary text triggers (their keywords are common words) are anchored at their keywords: their alternatives each
# begin with one (`tests/test_secrets.py` checks it), so trying the rest of the regex there finds what a scan would.
_KEYWORD_RULE_LEAD = "(?i)[\\w.-]{0,50}?(?:"
ANCHORED_GITLEAKS_RULES = ("generic-api-key", "hashicorp-tf-password")


def _gitleaks_rule(spec: dict[str, Any]) -> _Rule:
    source, anchored = spec["regex"], False
    if spec["id"] in ANCHORED_GITLEAKS_RULES and source.startswith(_KEYWORD_RULE_LEAD):
        source, anchored = "(?i)(?:" + source[len(_KEYWORD_RULE_LEAD):], True
    return _Rule(spec["id"], source, spec.get("keywords", ()), entropy=float(spec.get("entropy", 0.0)),
                 secret_group=int(spec.get("secretGroup", 0)), anchored=anchored, lead=50 if anchored else 0,
                 allowlists=[_Allowlist(allow) for allow in spec.get("allowlists", ())] + _own_allowlists(spec["id"]))


def _own_allowlists(rule_id: str) -> list[_Allowlist]:
    """promptops' additions to gitleaks' allowlists: the generic rule keeps hex ids (a `cache_key: <sha256>` or a
    `key_hash` is a content hash; a named secret in hex is caught by `secret-assignment`)."""
    if rule_id == "generic-api-key":
        return [_Allowlist({"regexes": [r"^(?:[a-z]{1,4}[-_])?[0-9a-fA-F-]{16,}$"]})]
    return []


def _merged(found: list[Finding]) -> list[Finding]:
    found.sort(key=lambda finding: (finding.start, -finding.end))
    merged: list[Finding] = []
    for finding in found:
        if merged and finding.start <= merged[-1].end:
            last = merged[-1]
            if finding.end > last.end:
                merged[-1] = Finding(last.start, finding.end, last.rule)
            continue
        merged.append(finding)
    return merged


@functools.cache
def detector() -> Detector:
    """The detector, loaded once per process (the rules file is read here; each rule compiles on first use)."""
    return Detector.from_file()


def find_secrets(text: str) -> list[Finding]:
    """The secrets in `text` that the rules find (environment values aside), in order, overlapping ones merged."""
    return detector().find(text) if len(text) >= 6 else []


# --- the public functions ------------------------------------------------------------------------


def secret_values() -> tuple[str, ...]:
    """Values of environment variables whose names say they are secrets, longest first.

    Worked out again only when the environment changed: `redact` runs on every text that goes to MLflow."""
    global _ENVIRONMENT
    data = getattr(os.environ, "_data", None)  # CPython's; compared as it is, without decoding every variable
    snapshot = tuple(data.items()) if isinstance(data, dict) else None
    if snapshot is not None and _ENVIRONMENT[0] == snapshot:
        return _ENVIRONMENT[1]
    values = tuple(sorted((value for name, value in os.environ.items() if len(value) >= 6 and SECRET_NAME.search(name)),
                          key=len, reverse=True))
    if snapshot is not None:
        _ENVIRONMENT = (snapshot, values)
    return values


_ENVIRONMENT: tuple[Optional[tuple[Any, ...]], tuple[str, ...]] = (None, ())


def redact(text: str) -> str:
    """The text with every secret replaced by `***`."""
    return _redact(text, secret_values())


def _redact(text: str, environment_secrets: tuple[str, ...]) -> str:
    for value in environment_secrets:
        if value in text:
            text = text.replace(value, MASK)
    found = find_secrets(text)
    if not found:
        return text
    parts, position = [], 0
    for finding in found:
        parts.append(text[position:finding.start])
        parts.append(MASK)
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def url_has_credentials(url: str) -> bool:
    return bool(_URL_CREDENTIALS.search(url))


def credential_in(value: Any, place: tuple[str | int, ...] = ()) -> Optional[tuple[tuple[str | int, ...], str]]:
    """The first credential in (nested) settings: its place (keys and list indexes below `place`) and why it looks like one."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (SECRET_NAME.search(key) or _SECRET_HEADER.search(key)):
                return (*place, key), "looks like a secret"
            found = credential_in(item, (*place, str(key)))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = credential_in(item, (*place, index))
            if found:
                return found
    elif isinstance(value, str):
        if url_has_credentials(value):
            return place, "the URL holds a user name or password"
        found = find_secrets(value)
        if found:
            return place, f"the value looks like a secret ({found[0].rule})"
    return None


def redact_mapping(values: dict[str, Any]) -> dict[str, Any]:
    """Drop keys that name secrets; mask secret-looking values in the rest (in nested lists and mappings too)."""
    environment_secrets = secret_values()
    clean = {}
    for key, value in values.items():
        if isinstance(key, str) and SECRET_NAME.search(key):
            continue
        redacted = _redact_data(value, environment_secrets, None)
        # A value with nothing to mask is kept as it was (a tuple stays a tuple: MLflow logs its str()).
        clean[key] = value if redacted == (list(value) if isinstance(value, tuple) else value) else redacted
    return clean


def redact_data(value: Any, *, max_chars: Optional[int] = None) -> Any:
    """`redact` applied to every string in nested mappings and lists (tables, JSON artifacts, span values), and the
    value of every key that names a secret masked whole; with `max_chars`, each string is also cut to that length,
    ending with how long it was (cutting it again changes nothing)."""
    return _redact_data(value, secret_values(), max_chars)


def _redact_data(value: Any, environment_secrets: tuple[str, ...], max_chars: Optional[int]) -> Any:
    if isinstance(value, str):
        text = _redact(value, environment_secrets)
        if max_chars is None or len(text) <= max_chars:
            return text
        note = f"… [cut: {len(text):,} characters]"
        return text[: max_chars - len(note)] + note
    if isinstance(value, dict):
        return {key: _masked(item) if isinstance(key, str) and SECRET_NAME.search(key) else
                _redact_data(item, environment_secrets, max_chars) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_data(item, environment_secrets, max_chars) for item in value]
    return value


def _masked(value: Any) -> Any:
    """The value of a key that names a secret: every text in it masked (numbers, booleans and None kept)."""
    if isinstance(value, str):
        return MASK if value else value
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    return value


def redact_yaml(text: str) -> str:
    """YAML text redacted and still loadable: unchanged when nothing is secret, else re-written from its redacted values
    (a bare `***` would read as a YAML alias)."""
    if redact(text) == text:
        return text
    import yaml

    return yaml.safe_dump(redact_data(yaml.safe_load(text)), sort_keys=False, allow_unicode=True, width=100)


def scrub_log_records() -> None:
    """From now on, every log record this process makes has its message and traceback redacted, whichever library
    logs it (MLflow, DSPy, LiteLLM, Optuna) and wherever its handlers send it. For an application's process, as the
    CLI's: it changes Python's log record factory. Installing it twice changes nothing."""
    import logging

    previous = logging.getLogRecordFactory()
    if getattr(previous, "_promptops_scrubs", False):
        return

    def scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its message: left for the handler to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[0] is not None:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    scrubbed_record._promptops_scrubs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(scrubbed_record)


def error_line(exc: BaseException, max_chars: int = 500) -> str:
    """`Type: message` on one line, secrets masked: how an error is kept in a result, a record or a table."""
    text = " ".join(str(exc).split())
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:max_chars]
