import argparse
from pathlib import Path

import pytest

from controller.app import SidecarUpstream
from controller.cli import (
    EXIT_USAGE,
    UsageError,
    add_arguments,
    main,
    parse_options,
    pod_namespace,
)


def parse(*argv: str, environ: dict[str, str] | None = None, account: Path | None = None):  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parse_options(
        parser.parse_args(argv),
        environ=environ or {},
        account_dir=account or Path("/nonexistent"),
    )


def test_ingress_defaults_watch_all_namespaces() -> None:
    options = parse()
    assert options.mode == "ingress"
    assert options.namespaces is None
    assert parse("--namespace", "all").namespaces is None


def test_namespaces_repeatable_and_comma_separated() -> None:
    assert parse("--namespace", "a,b", "--namespace", "c").namespaces == ("a", "b", "c")


def test_upstream_implies_sidecar_and_resolves_own_namespace() -> None:
    options = parse(
        "--upstream",
        "orders=3001",
        "--upstream",
        "pay/payments=3002",
        environ={"POD_NAMESPACE": "shop"},
    )
    assert options.mode == "sidecar"
    assert options.upstreams == (
        SidecarUpstream("shop", "orders", 3001),
        SidecarUpstream("pay", "payments", 3002),
    )


def test_pod_namespace_order(tmp_path: Path) -> None:
    assert pod_namespace("flag", {"POD_NAMESPACE": "env"}, tmp_path) == "env"
    assert pod_namespace("flag", {}, tmp_path) == "flag"
    assert pod_namespace(None, {}, tmp_path) == "default"
    (tmp_path / "namespace").write_text("from-sa\n")
    assert pod_namespace("flag", {}, tmp_path) == "from-sa"
    assert pod_namespace("flag", {"POD_NAMESPACE": "env"}, tmp_path) == "env"


def test_sidecar_namespace_flag_is_the_fallback() -> None:
    options = parse("--upstream", "orders=3001", "--namespace", "mine")
    assert options.upstreams[0].namespace == "mine"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "sidecar"], "at least one --upstream"),
        (["--mode", "ingress", "--upstream", "a=1"], "sidecar mode"),
        (["--upstream", "orders"], "NAME=PORT"),
        (["--upstream", "orders=http"], "port"),
        (["--upstream", "orders=70000"], "port"),
        (["--upstream", "Orders=3001"], "Service name"),
        (["--upstream", "Bad_NS/orders=3001"], "namespace"),
        (["--upstream", "a=3001", "--upstream", "a=3002"], "twice"),
        (["--upstream", "a=3001", "--upstream", "b=3001"], "twice"),
        (["--upstream", "a=3001", "--port", "80"], "--port"),
        (["--upstream", "a=9000", "--admin-port", "9000"], "admin-port"),
        (["--upstream", "a=1", "--namespace", "x,y"], "one namespace"),
        (["--namespace", "all,shop"], "all"),
        (["--namespace", "Shop"], "namespace name"),
    ],
)
def test_invalid_usage(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*argv)


def test_invalid_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mode", "sidecar"]) == EXIT_USAGE
    assert "--upstream" in capsys.readouterr().err
    assert main(["--kubeconfig", "/nonexistent/config"]) == EXIT_USAGE
    assert "no such file" in capsys.readouterr().err


def test_invalid_setting_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--port", "0"]) == EXIT_USAGE
    assert "port" in capsys.readouterr().err


def test_a_bad_default_certificate_exits_2_before_anything_starts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    missing = tmp_path / "missing.crt"
    config.write_text(f"tls:\n  cert_file: {missing}\n  key_file: {tmp_path / 'missing.key'}\n")
    assert main(["--config", str(config)]) == EXIT_USAGE
    assert f"tls.cert_file {missing}: No such file or directory" in capsys.readouterr().err
