"""The README's configuration table is generated from the settings model; keep them equal."""

from pathlib import Path

from proxy.settings_doc import BEGIN, END, reference_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_the_settings_model() -> None:
    text = README.read_text()
    embedded = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert embedded == reference_markdown(), (
        "README.md's settings table is stale: regenerate it with `python -m proxy.settings_doc`"
    )


def test_readme_annotation_table_matches_the_parser() -> None:
    from controller.annotation_table import markdown_table

    text = README.read_text()
    embedded = text.split("<!-- annotations-reference:begin -->", 1)[1]
    embedded = embedded.split("<!-- annotations-reference:end -->", 1)[0].strip()
    assert embedded == markdown_table().strip()
