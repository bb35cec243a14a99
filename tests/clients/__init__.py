"""Real OpenStack clients (glance CLI, openstack CLI, openstacksdk) against a live server."""
