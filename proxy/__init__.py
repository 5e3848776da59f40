"""kubeferry data plane: an aiohttp reverse proxy over a pool of health-checked backends.

Nothing in this package imports Kubernetes; the controller pushes snapshots into it.
"""
