"""translate.parse_address gives exactly ipaddress.ip_address's verdicts (its fast path for
dotted quads must not accept or canonicalize anything differently)."""

import ipaddress
import random

import pytest

from controller.translate import parse_address


def reference(text: str) -> tuple[int, int, str] | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.version, int(address), address.compressed


@pytest.mark.parametrize(
    "text",
    [
        "10.244.0.1",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "0.00.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "+1.2.3.4",
        "1_0.1.1.1",
        "\u0661.2.3.4",  # an Arabic-Indic digit: isdigit() but not ASCII
        "1.2.3.4 ",
        "....",
        "",
        "::ffff:1.2.3.4",
        "fd00::0001",
        "FD00::1",
        "pod.local",
    ],
)
def test_known_cases(text: str) -> None:
    assert parse_address(text) == reference(text)


def test_random_texts_agree_with_ipaddress() -> None:
    rng = random.Random(13)
    alphabet = "0123456789.:af +_-\u0663"
    for _ in range(5_000):
        quad = ".".join(str(rng.randrange(300)).zfill(rng.choice((1, 1, 2, 3))) for _ in range(4))
        noise = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 16)))
        for text in (quad, noise):
            assert parse_address(text) == reference(text), text
