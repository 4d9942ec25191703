"""{name} in a cell is filled from the user's variables, and nothing else changes."""

from types import SimpleNamespace

import pytest

from ipyimagine.interpolate import interpolate

NS = {"animal": "fox", "colours": ["red", "blue"], "cfg": {"mood": "calm"}, "obj": SimpleNamespace(name="lamp"), "tricky": "{animal}"}


def test_names_indexes_keys_and_attributes_are_filled():
    text, unresolved = interpolate("a {animal}, {colours[1]} and {colours[-1]}, {cfg['mood']}, a {obj.name}", NS)
    assert text == "a fox, blue and blue, calm, a lamp" and unresolved == []


def test_json_code_and_empty_braces_stay_exactly_as_written():
    cell = 'a poster that says {"a": 1} and {} and {x: y} and f(x){return 1}'
    assert interpolate(cell, NS) == (cell, [])


def test_double_braces_are_literal_braces():
    assert interpolate("{{animal}} and {animal}", NS)[0] == "{animal} and fox"


def test_unknown_names_are_left_as_typed_and_reported():
    assert interpolate("a {unicorn} and a {animal}", NS) == ("a {unicorn} and a fox", ["{unicorn}"])
    assert interpolate("{colours[5]}", NS) == ("{colours[5]}", ["{colours[5]}"])


def test_substituted_text_is_never_formatted_again():
    assert interpolate("see {tricky}", NS)[0] == "see {animal}"


class Lamp:
    _secret = "hidden"

    def __init__(self):
        self._private = "hidden"
        self.name = "lamp"

    @property
    def broken(self):
        raise RuntimeError("a property that raises")

    def method(self):
        return 1


class Unprintable:
    def __str__(self):
        raise ValueError("a __str__ that raises")


def a_function():
    return 1


def test_private_and_dunder_attributes_are_not_followed():
    ns = {"lamp": Lamp(), "f": a_function, "cfg": {"_key": "ok"}}
    cell = "{f.__globals__} {lamp._private} {lamp._secret} {lamp.__class__.__name__} {lamp.method.__self__} {lamp.name} {cfg['_key']}"
    assert interpolate(cell, ns) == (
        "{f.__globals__} {lamp._private} {lamp._secret} {lamp.__class__.__name__} {lamp.method.__self__} lamp ok",
        ["{f.__globals__}", "{lamp._private}", "{lamp._secret}", "{lamp.__class__.__name__}", "{lamp.method.__self__}"],
    )


def test_a_property_or_str_that_raises_is_left_as_typed_not_a_traceback():
    ns = {"lamp": Lamp(), "odd": Unprintable(), "odds": [Unprintable()], "animal": "fox"}
    assert interpolate("{lamp.broken} {odd} {odds[0]} a {animal}", ns) == ("{lamp.broken} {odd} {odds[0]} a fox", ["{lamp.broken}", "{odd}", "{odds[0]}"])


def test_a_field_holding_a_secret_in_use_is_refused_in_one_sentence(shell, monkeypatch):
    from IPython.core.error import UsageError

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-in-the-environment-123")
    shell.user_ns["os"] = __import__("os")
    with pytest.raises(UsageError) as caught:
        shell.run_cell_magic("imagine", "--seed 1 --steps 2", "a poster of {os.environ}")
    assert str(caught.value) == (
        "{os.environ} holds a secret in use (an API key, token or password); it is not put into the prompt. Name the value you mean instead."
    )
    assert "sk-test" not in str(caught.value)
