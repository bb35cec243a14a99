"""Glimpse's own benchmark: the same Images API v2 workload against Glimpse and,
optionally, real OpenStack Glance, with the machine's limits measured in the
same run. Run it with ``python -m bench --help``."""
