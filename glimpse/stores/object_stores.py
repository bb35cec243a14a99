"""Builds swift and s3 stores from a configuration section (Glance's options)."""

from __future__ import annotations

import configparser

from oslo_config import cfg

from glimpse.stores.base import Store
from glimpse.stores.object_opts import S3_OPTS, SWIFT_OPTS
from glimpse.stores.options import StoreConfig

MB = 1024 * 1024
KINDS = ("swift", "s3")


def OPTS(kind: str) -> list[cfg.Opt]:  # noqa: N802 - the registry's driver contract
    return SWIFT_OPTS if kind == "swift" else S3_OPTS


def build(config: StoreConfig) -> Store:
    """The swift or s3 store of one configuration section (the registry registered
    its options there)."""
    if config.kind == "swift":
        return _swift(config.name, config.section, config.description)
    return _s3(config.name, config.section, config.description)


def _s3(name: str, section, description: str) -> Store:  # noqa: ANN001
    from glimpse.stores.s3 import S3Store

    return S3Store(
        name, host=section.s3_store_host or "", access_key=section.s3_store_access_key or "",
        secret_key=section.s3_store_secret_key or "", bucket=section.s3_store_bucket or "",
        create_bucket_on_put=section.s3_store_create_bucket_on_put,
        bucket_url_format=section.s3_store_bucket_url_format,
        large_object_size=section.s3_store_large_object_size * MB,
        large_object_chunk_size=section.s3_store_large_object_chunk_size * MB,
        thread_pools=section.s3_store_thread_pools, region_name=section.s3_store_region_name,
        cacert=section.s3_store_cacert or None, description=description)


def _swift(name: str, section, description: str) -> Store:  # noqa: ANN001
    from glimpse.stores.swift import SwiftAccount, SwiftStore

    multi_tenant = section.swift_store_multi_tenant
    if multi_tenant and section.swift_store_config_file:
        # As Glance: the per-project accounts and the references exclude each other.
        raise ValueError(f"Store {name}: swift_store_multi_tenant and "
                         "swift_store_config_file are mutually exclusive")
    reference = section.default_swift_reference
    if section.swift_store_config_file:
        accounts = read_references(section.swift_store_config_file)
    else:
        accounts = {reference: SwiftAccount(
            section.swift_store_auth_address or "", section.swift_store_user or "",
            section.swift_store_key or "", section.swift_store_auth_version)}
    return SwiftStore(
        name, accounts=accounts, default_reference=reference,
        use_references=bool(section.swift_store_config_file),
        container=section.swift_store_container,
        create_container_on_put=section.swift_store_create_container_on_put,
        large_object_size=section.swift_store_large_object_size * MB,
        large_object_chunk_size=section.swift_store_large_object_chunk_size * MB,
        retry_get_count=section.swift_store_retry_get_count,
        multiple_containers_seed=section.swift_store_multiple_containers_seed,
        region_name=section.swift_store_region, endpoint=section.swift_store_endpoint,
        endpoint_type=section.swift_store_endpoint_type,
        service_type=section.swift_store_service_type,
        insecure=section.swift_store_auth_insecure, cacert=section.swift_store_cacert,
        description=description, multi_tenant=multi_tenant,
        admin_tenants=section.swift_store_admin_tenants)


def read_references(path: str) -> dict:
    """The accounts of swift_store_config_file (Glance's format: one section per
    reference; values may be quoted)."""
    from glimpse.stores.swift import SwiftAccount

    parser = configparser.ConfigParser(interpolation=None)
    if not parser.read(path):
        raise ValueError(f"swift_store_config_file {path} cannot be read")
    accounts = {}
    for ref in parser.sections():
        values = {k: _unquote(v) for k, v in parser.items(ref)}
        accounts[ref] = SwiftAccount(
            auth_address=values.get("auth_address", ""), user=values.get("user", ""),
            key=values.get("key", ""), auth_version=values.get("auth_version", "3"),
            user_domain_id=values.get("user_domain_id", "default"),
            user_domain_name=values.get("user_domain_name"),
            project_domain_id=values.get("project_domain_id", "default"),
            project_domain_name=values.get("project_domain_name"))
    return accounts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value
