"""The Python `kubernetes` client against fleetdb: CRD creation, CustomObjectsApi CRUD,
merge patch, a watch.Watch stream, and the errors the client sees.

Usage: client_scenarios.py KUBECONFIG. Exits non-zero with a message on the first failure.
"""

import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "example.com", "v1", "gizmos"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "gizmo", "kind": "Gizmo"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer"}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def gizmo(name, size):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Gizmo",
        "metadata": {"name": name, "labels": {"team": "infra"}},
        "spec": {"size": size},
    }


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def wait_established(extensions):
    deadline = time.time() + 20
    while time.time() < deadline:
        crd = extensions.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        for condition in crd.status.conditions or []:
            if condition.type == "Established" and condition.status == "True":
                return
        time.sleep(0.2)
    check(False, "the CRD never became established")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    version = client.VersionApi().get_code()
    check(version.git_version.startswith("v1.33."), f"unexpected version {version.git_version}")

    extensions = client.ApiextensionsV1Api()
    extensions.create_custom_resource_definition(CRD)
    wait_established(extensions)

    objects = client.CustomObjectsApi()
    created = objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, gizmo("g1", 1))
    check(created["metadata"]["resourceVersion"], "create returns a resourceVersion")
    fetched = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1")
    check(fetched["spec"]["size"] == 1, f"get returned {fetched}")

    listed = objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector="team=infra")
    check([i["metadata"]["name"] for i in listed["items"]] == ["g1"], f"list returned {listed}")

    # The client's default patch content type is merge patch.
    patched = objects.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1", {"spec": {"size": 2}})
    check(patched["spec"]["size"] == 2 and patched["metadata"]["generation"] == 2, f"patch returned {patched}")

    fetched["spec"]["size"] = 3  # stale resourceVersion: must conflict
    try:
        objects.replace_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g1", fetched)
        check(False, "a stale replace must fail")
    except ApiException as e:
        check(e.status == 409, f"stale replace answered {e.status}")

    try:
        objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "missing")
        check(False, "getting a missing object must fail")
    except ApiException as e:
        check(e.status == 404, f"missing object answered {e.status}")

    # watch.Watch: changes made by another thread arrive in order.
    events = []
    start_rv = objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["metadata"]["resourceVersion"]

    def writer():
        time.sleep(0.5)
        objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, gizmo("g2", 5))
        objects.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g2", {"spec": {"size": 6}})
        objects.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "g2")

    thread = threading.Thread(target=writer)
    thread.start()
    stream = watch.Watch().stream(
        objects.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        resource_version=start_rv,
        timeout_seconds=10,
    )
    for event in stream:
        events.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            break
    thread.join()
    check(events == [("ADDED", "g2"), ("MODIFIED", "g2"), ("DELETED", "g2")], f"watch saw {events}")

    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, gizmo("g3", 7))
    objects.delete_collection_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector="team=infra")
    remaining = objects.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"]
    check(remaining == [], f"objects remain: {remaining}")

    # A typed built-in: namespaces created without apiVersion/kind in the body.
    core = client.CoreV1Api()
    core.create_namespace({"metadata": {"name": "pyns"}})
    check(core.read_namespace("pyns").status.phase == "Active", "namespace is active")
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
