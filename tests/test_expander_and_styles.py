"""The offline template expander and the style presets."""

import pytest

from ipyimagine import RequestError
from ipyimagine.expanders.template import TemplateExpander
from ipyimagine.styles import Style, get_style, read_styles


def test_the_users_words_come_first_and_unchanged():
    idea = "a lighthouse in a storm, at dusk"
    expansion = TemplateExpander().expand(idea, variant=7)
    assert expansion.prompt.startswith(idea + ", ")
    assert len(expansion.prompt.split(", ")) >= 5  # content type, style, framing, lighting, detail
    # "storm" and "dusk" suggest the mood and the light, in the idea's order
    assert "moody, dramatic atmosphere, warm dusk palette" in expansion.prompt and "dramatic lighting" in expansion.prompt
    assert expansion.negative_prompt and expansion.expander == "template"


def test_same_idea_and_variant_give_the_same_expansion_and_other_variants_vary():
    expander = TemplateExpander()
    first = expander.expand("a fox in the snow", variant=1)
    assert expander.expand("a fox in the snow", variant=1) == first
    others = {expander.expand("a fox in the snow", variant=s).prompt for s in range(2, 12)}
    assert len(others | {first.prompt}) > 1


def test_multiline_idea_becomes_one_line_without_losing_words():
    prompt = TemplateExpander().expand("a red circle\n  on a blue background.\n").prompt
    assert prompt.startswith("a red circle on a blue background, ")


def test_a_style_preset_replaces_the_expanders_own_style_words():
    from ipyimagine.expanders.template import CONTENT_TYPES, STYLE_WORDS

    for seed in range(10):
        prompt = TemplateExpander().expand("a cat", style="watercolor", variant=seed).prompt
        assert prompt.startswith("a cat, ")
        assert not any(word in prompt for word in CONTENT_TYPES + STYLE_WORDS)  # the preset brings those


def test_style_application_follows_the_web_ui_rules():
    placeholder = Style("x", "{prompt}, oil painting", "photo")
    assert placeholder.apply("a cat", "blurry") == ("a cat, oil painting", "blurry, photo")
    appended = Style("y", "pastel colours")
    assert appended.apply("a cat") == ("a cat, pastel colours", "")


def test_styles_file_reading_handles_a_bom_and_the_old_text_column():
    styles = read_styles('\ufeffname,text\nOld,"{prompt}, sepia"\n')
    assert styles["old"].prompt == "{prompt}, sepia"


def test_unknown_style_names_the_choices():
    assert get_style("Watercolor").name == "watercolor"
    with pytest.raises(RequestError, match=r"Unknown style 'nope'; choose one of: .*watercolor"):
        get_style("nope")
