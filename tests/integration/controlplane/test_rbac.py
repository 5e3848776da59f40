"""A ServiceAccount kubeconfig carries exactly the permissions RBAC grants."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from tests.kube.fixtures import SaKubeconfig
from tests.kube.manifests import body
from tests.kube.wait import eventually

pytestmark = [pytest.mark.kube, pytest.mark.integration]


async def list_services_status(kubeconfig: Path, namespace: str) -> int:
    api = await config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        await client.CoreV1Api(api).list_namespaced_service(namespace)
        return 200
    except client.ApiException as e:
        return int(e.status)
    finally:
        await api.close()


async def test_service_account_lists_services_only_when_a_role_allows(
    kube_api: client.ApiClient, kube_namespace: str, sa_kubeconfig: SaKubeconfig
) -> None:
    kubeconfig = await sa_kubeconfig(kube_namespace, "reader")
    assert await list_services_status(kubeconfig, kube_namespace) == 403

    rbac = client.RbacAuthorizationV1Api(kube_api)
    await rbac.create_namespaced_role(
        kube_namespace,
        body(
            {
                "metadata": {"name": "service-reader"},
                "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}],
            }
        ),
    )
    await rbac.create_namespaced_role_binding(
        kube_namespace,
        body(
            {
                "metadata": {"name": "reader-reads-services"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "service-reader",
                },
                "subjects": [
                    {"kind": "ServiceAccount", "name": "reader", "namespace": kube_namespace}
                ],
            }
        ),
    )

    async def allowed() -> None:  # the RBAC authorizer reads bindings from an informer cache
        assert await list_services_status(kubeconfig, kube_namespace) == 200

    await eventually(allowed)
    # The grant is exactly the Role: not cluster-wide, and not other resources.
    assert await list_services_status(kubeconfig, "default") == 403
    api = await config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        with pytest.raises(client.ApiException) as denied:
            await client.CoreV1Api(api).list_namespaced_pod(kube_namespace)
        assert denied.value.status == 403
    finally:
        await api.close()
