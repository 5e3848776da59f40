"""Shared pytest setup. The real-control-plane fixtures live in tests/kube and are loaded here
so the controller's integration tests and the end-to-end tests can both use them."""

pytest_plugins = ["tests.kube.fixtures"]
