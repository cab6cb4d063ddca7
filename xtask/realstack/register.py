"""Registers the local real cloud's service users, services and endpoints in Keystone, in one
openstacksdk process (about 20 separate `openstack` commands would cost ~1.5 s each).

Reads everything from the environment: REALSTACK_AUTH_URL, REALSTACK_ADMIN_PASSWORD,
REALSTACK_SERVICE_PASSWORD, REALSTACK_REGION and REALSTACK_ENDPOINTS, a JSON object
`{"image": ["glance", "http://..."], ...}` (service type: [service name, URL]).
Idempotent: what exists already is kept.
"""

import json
import os

import openstack

SERVICE_USERS = ["glance", "placement", "nova", "neutron"]


def main():
    env = os.environ
    region = env["REALSTACK_REGION"]
    # Only these settings: no clouds.yaml, no OS_* variables (a stale clouds.yaml would win).
    conn = openstack.connect(
        load_yaml_config=False,
        load_envvars=False,
        auth_url=env["REALSTACK_AUTH_URL"],
        username="admin",
        password=env["REALSTACK_ADMIN_PASSWORD"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=region,
        identity_api_version="3",
    )
    identity = conn.identity
    domain = identity.find_domain("default", ignore_missing=False)
    project = identity.find_project("service", domain_id=domain.id) or identity.create_project(
        name="service", domain_id=domain.id, description="Service users of the local real cloud")
    admin_role = identity.find_role("admin", ignore_missing=False)
    service_role = identity.find_role("service") or identity.create_role(name="service")
    for name in SERVICE_USERS:
        user = identity.find_user(name, domain_id=domain.id)
        if user is None:
            user = identity.create_user(name=name, domain_id=domain.id, password=env["REALSTACK_SERVICE_PASSWORD"],
                                        default_project_id=project.id)
        for role in (admin_role, service_role):
            identity.assign_project_role_to_user(project, user, role)
    for service_type, (name, url) in json.loads(env["REALSTACK_ENDPOINTS"]).items():
        service = next(iter(identity.services(type=service_type)), None) or identity.create_service(
            name=name, type=service_type, is_enabled=True)
        existing = {e.interface for e in identity.endpoints(service_id=service.id, region_id=region)}
        for interface in ("public", "internal"):
            if interface not in existing:
                identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=region)
        print(f"registered {service_type} ({name}) at {url}")


if __name__ == "__main__":
    main()
