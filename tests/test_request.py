"""Bad requests are refused with one sentence naming the option, the value and the rule."""

import pytest

from ipyimagine import Request, RequestError
from ipyimagine.request import parse_size


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": 0}, "--steps must be from 1 to 150, got 0."),
        ({"steps": 151}, "--steps must be from 1 to 150, got 151."),
        ({"guidance": 30.5}, "--guidance must be from 0.0 to 30.0, got 30.5."),
        ({"n": 9}, "-n must be from 1 to 8, got 9."),
        ({"seed": -1}, "--seed must be from 0 to 4294967295, got -1."),
        ({"seed": 2**32}, "--seed must be from 0 to 4294967295, got 4294967296."),
        ({"width": 100}, "--width must be a multiple of 8, got 100 (try 96)."),
        ({"height": 4096}, "--height must be from 8 to 2048, got 4096."),
        ({"steps": "ten"}, "--steps must be a whole number from 1 to 150, got 'ten'."),
    ],
)
def test_out_of_range_values_are_refused_with_the_rule(options, message):
    with pytest.raises(RequestError) as caught:
        Request("a red circle", **options)
    assert str(caught.value) == message


def test_empty_idea_is_refused():
    with pytest.raises(RequestError, match="The idea is empty"):
        Request("   \n")


def test_size_strings_and_pairs():
    assert parse_size("512x768") == (512, 768)
    assert parse_size("64") == (64, 64)
    assert parse_size((32, 48)) == (32, 48)
    with pytest.raises(RequestError, match="--size must look like 512x512"):
        parse_size("big")


def test_from_options_fills_width_and_height_from_size_and_rejects_unknown_options():
    request = Request.from_options("a red circle", size="64x32", seed=3)
    assert (request.width, request.height, request.seed) == (64, 32, 3)
    with pytest.raises(RequestError, match="Unknown option 'stepz'"):
        Request.from_options("a red circle", stepz=3)
    with pytest.raises(RequestError, match="either --size or --width/--height"):
        Request.from_options("a red circle", size="64x64", width=32)


def test_with_defaults_keeps_what_the_user_said():
    request = Request("idea", steps=7).with_defaults(steps=20, guidance=5.0)
    assert (request.steps, request.guidance) == (7, 5.0)
