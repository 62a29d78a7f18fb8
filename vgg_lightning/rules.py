"""How a setting is checked: the kinds of value it may take, and one way to refuse a room's settings that break
its rules (naming the key, the value and what would do). Torch-free, as every settings check: the app refuses
a mistyped value before it pays for importing torch."""

from __future__ import annotations

from collections.abc import Callable, Mapping

Rules = Mapping[str, tuple[Callable[[object], bool], str]]  # key -> (accepts the value?, what would do)


def is_int(value) -> bool:
    """An int, and not a YAML `true` (a bool is an int to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_rules(section: str, settings: Mapping, rules: Rules) -> None:
    """Refuse, before any work, the first key of `settings` whose value its rule does not accept:
    `<section>.<key>=<value>: expected <what would do>`. Keys the settings lack are left to their defaults."""
    for key, (accepts, accepted) in rules.items():
        if key in settings and not accepts(settings[key]):
            name = f"{section}.{key}" if section else key  # "": top-level keys (seed, top_k)
            raise ValueError(f"{name}={settings[key]!r}: expected {accepted}")
