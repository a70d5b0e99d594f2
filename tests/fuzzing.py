"""Hostile handler arguments, for the fuzz test and ``bench/fuzz.py``.

``cases(seed, count)`` yields argv lists as an attacker, a broken locale or a
failing engine could hand them to the handler: catalog names, aliases and
case variants, unknown and empty names; too few and too many arguments;
numbers too large for any integer type, NaN and infinities, decimal commas;
dates that almost parse; template and shell syntax, path traversal, control
characters, lone surrogates, undecodable bytes, very long values. The same
seed gives the same cases.

``RULES`` is a rule file that exercises every condition shape and template
feature on those events, with ``log`` steps into a directory of the caller's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Union

from router.catalog import ALIASES, CATALOG

Arg = Union[str, bytes]

NAMES = [spec.name for spec in CATALOG] + list(ALIASES)
ODD_NAMES = ["", " ", "endscript", "ENDSOURCE", "Unknown", "--", "-h2", "{{ 7*7 }}", "a" * 300]
VALUES = [
    "",
    " ",
    "0",
    "-530",
    "1" * 19,
    "9" * 25,
    "1" * 4300,
    "-" + "9" * 4400,
    "3.5",
    "2,5",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "12%",
    "true",
    "false",
    "yes",
    "2/10/2017 15:39",
    "31/12/2016 18:06",
    "2/30/2017",
    "12/14/99 16:32 PM",
    "2016-11-21 18:06",
    "0001-01-01T00:00:00",
    "9999-12-31 23:59",
    "99/99/99 99:99",
    "successful",
    "backup client not found",
    "My Computer/Mac HD",
    "C:\\",
    '"C:\\"',
    "\\\\server\\share\\",
    "../../../../etc/passwd",
    "/etc/shadow",
    "{{ 7*7 }}",
    "{% for x in range(10) %}{{ x }}{% endfor %}",
    "{{ ''.__class__.__mro__ }}",
    "$(id)",
    "; rm -rf /",
    "`reboot`",
    "a\nb",
    "tab\there",
    "\x00nul",
    "\x1b[31mred",
    "\u202eevil",
    "caf\u00e9",
    "\udcff",
    "\ud800",
    "\U0001f4be",
    "x" * 70000,
]
BYTES = [b"\xff\xfe", b"caf\xe9", b"\x80\x81\x82", b"ok"]


def _value(rng: random.Random) -> Arg:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(VALUES)
    if roll < 0.7:
        return rng.choice(BYTES)
    if roll < 0.85:
        return str(rng.randint(-(10**12), 10**12))
    # A random string of printable and unprintable characters.
    length = rng.randint(0, 40)
    return "".join(
        chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFF)])) for _ in range(length)
    )


def case(rng: random.Random) -> list[Arg]:
    """One argv (without the program name)."""
    roll = rng.random()
    if roll < 0.8:
        name = rng.choice(NAMES)
        if rng.random() < 0.1:
            name = name.swapcase()
    else:
        name = rng.choice(ODD_NAMES)
    spec = next((s for s in CATALOG if s.name == name), None)
    expected = len(spec.fields) if spec is not None else 4
    count = max(0, expected + rng.choice([0, 0, 0, -1, -2, 1, 3, -expected]))
    return [name, *(_value(rng) for _ in range(count))]


def cases(seed: int, count: int) -> Iterator[list[Arg]]:
    rng = random.Random(seed)
    for _ in range(count):
        yield case(rng)


#: Every condition shape and template feature, on the events above. ``LOGS``
#: is replaced by a directory of the caller's.
RULES = """\
target sink = "json://127.0.0.1:9/fuzz"

define failing = status == "failure" or errors > 0 or error_code != 0

rule "fuzz: everything logged"
on any
  log "{{ event }} {{ args | join(' ') | truncate(200) }} {{ received | datetime }}"
      to "LOGS/all.log"

rule "fuzz: comparisons"
on EndScript, EndSource, FatalBackupError
where failing and not (script matches "Nightly*") and script =~ "^[A-Za-z]" and
      script contains "a" and error_code in [-530, -1017, -102] and errors between 0 and 10
  notify sink title "{{ script }}: {{ error_message }} ({{ error_code }})"
  throttle 1h by script

rule "fuzz: sizes and durations"
on EndSource where bytes > 1MB and duration > 1m and source_start < "2030-01-01 00:00"
  notify sink body "{{ bytes | filesize }} in {{ duration | duration }}, {{ kb }} KB"

rule "fuzz: history"
on EndScript where previous.status == "failure" and streak >= 2 and previous.script exists
  notify sink title "{{ previous.streak }} then {{ streak }}"

rule "fuzz: media"
on MediaRequest, TimedOutMediaRequest where known == true or waited >= 5m
  notify sink
  digest 10m by backup_set

rule "fuzz: anomalies"
on AnomalyAlert where changed_percent > 12.5 and client not in ["a", "b"]
  log "{{ client }} {{ '%.1f' | format(changed_percent) }}" to "LOGS/{{ client }}.log"

rule "fuzz: templates"
on StartScript, StartSource, NextExec, StopSched, PasswordEntry, ScriptCheckFailed
  notify sink title "{{ event }} {{ script | default('?') }}"
    body \"\"\"
      {% for arg in args %}{{ loop.index }}={{ arg | replace('{', '(') }}
      {% endfor %}{{ host }} {{ weekday }} {{ hour }}
      \"\"\"

rule "fuzz: built-in messages"
on any where hour between 0 and 23
  notify sink
"""
