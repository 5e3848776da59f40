"""The configuration reference, generated from the Settings model so the README cannot drift.

`python -m proxy.settings_doc` prints the Markdown table that README.md embeds between the
`settings-reference` markers; a unit test fails when the two differ.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from proxy.settings import Settings

BEGIN = "<!-- settings-reference:begin -->"
END = "<!-- settings-reference:end -->"


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, f"{prefix}{name}."))
            continue
        rows.append((f"{prefix}{name}", _env_name(prefix, name), _default(info), _doc(info)))
    return rows


def _env_name(prefix: str, name: str) -> str:
    return "KUBEFERRY_" + (prefix.replace(".", "__") + name).upper()


def _default(info: FieldInfo) -> str:
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "none"
    return f"`{value}`"


def _doc(info: FieldInfo) -> str:
    return (info.description or "").replace("|", "\\|")


def reference_markdown() -> str:
    lines = [
        "| setting (YAML) | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{key}` | `{env}` | {default} | {doc} |"
        for key, env, default, doc in _rows(Settings, "")
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference_markdown())
