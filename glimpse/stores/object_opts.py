"""Options of the swift and s3 stores, with Glance's names, defaults and units (MB).

Kept apart from the drivers so glimpse.config can list them without importing boto3
or swiftclient. They belong to each ``[<name>]`` section of enabled_backends and, in
the single-store form, to ``[glance_store]``; there the old spelling in ``[DEFAULT]``
(seed 004 §5.4.4) is still read, and oslo.config logs a deprecation warning naming
the new place.
"""

from __future__ import annotations

from oslo_config import cfg

SWIFT_OPTS = [
    cfg.StrOpt("default_swift_reference", default="ref1",
               help="Reference (section of swift_store_config_file) whose account new "
               "images go to."),
    cfg.StrOpt("swift_store_config_file",
               help="File with one section per Swift account (auth_address, user, key, "
               "auth_version, user_domain_id, project_domain_id, ...). Locations then "
               "name the reference (swift+config://ref/...) instead of the address."),
    cfg.StrOpt("swift_store_auth_address",
               help="Auth URL of Swift (Keystone v3, or a tempauth v1 /auth/v1.0 URL); "
               "used when swift_store_config_file is not set."),
    cfg.StrOpt("swift_store_user", secret=True,
               help="User, as 'project:user' (Keystone) or 'account:user' (tempauth)."),
    cfg.StrOpt("swift_store_key", secret=True, help="Password / key of swift_store_user."),
    cfg.StrOpt("swift_store_auth_version", default="3", choices=("1", "2", "3"),
               help="Auth version: 3 (Keystone v3) or 1 (tempauth and other v1 auth)."),
    cfg.StrOpt("swift_store_container", default="glance",
               help="Container of the images (the name prefix with "
               "swift_store_multiple_containers_seed)."),
    cfg.BoolOpt("swift_store_create_container_on_put", default=False,
                help="Create the container on the first upload when it is missing."),
    cfg.IntOpt("swift_store_large_object_size", default=5 * 1024, min=1,
               help="Size in MB from which image data is written as segments plus a "
               "manifest (Dynamic Large Object)."),
    cfg.IntOpt("swift_store_large_object_chunk_size", default=200, min=1,
               help="Size in MB of each segment."),
    cfg.IntOpt("swift_store_retry_get_count", default=0, min=0,
               help="How often a download whose stream breaks is resumed from the last "
               "byte received."),
    cfg.IntOpt("swift_store_multiple_containers_seed", default=0, min=0, max=32,
               help="Spread images over 16**N containers named <container>_<first N "
               "characters of the image id>; 0: one container."),
    cfg.BoolOpt("swift_store_multi_tenant", default=False,
                help="Store each image in the Swift account of the project that uploads "
                "it, with the request's token, in a container of its own named "
                "<swift_store_container>_<image id> (created on upload whatever "
                "swift_store_create_container_on_put says, removed with the image). The "
                "account URL is swift_store_endpoint or the caller's catalog entry of "
                "swift_store_service_type / _endpoint_type / swift_store_region. Excludes "
                "swift_store_config_file; the auth address, user and key are not used. Each "
                "container's ACLs let the projects that may read the image read it with "
                "their own tokens (public and community: every project; shared: the "
                "owner and the members)."),
    cfg.ListOpt("swift_store_admin_tenants", default=[],
                help="Project ids given read and write access to every container of a "
                "multi-tenant store (swift_store_multi_tenant), whatever the image's "
                "visibility: each is put in the container's read and write ACLs "
                "(Glance puts them in the write ACL only, which does not let them read)."),
    cfg.StrOpt("swift_store_region", help="Region of the object-store endpoint."),
    cfg.StrOpt("swift_store_endpoint",
               help="URL of the Swift account (http://host:port/v1/AUTH_<project id>), used "
               "instead of the object-store endpoint of Keystone's catalog."),
    cfg.StrOpt("swift_store_endpoint_type", default="publicURL",
               help="Endpoint type of the object-store endpoint in the catalog."),
    cfg.StrOpt("swift_store_service_type", default="object-store",
               help="Service type of Swift in the catalog."),
    cfg.BoolOpt("swift_store_auth_insecure", default=False,
                help="Do not verify the server certificate."),
    cfg.StrOpt("swift_store_cacert", help="CA bundle to verify the server certificate."),
]

S3_OPTS = [
    cfg.StrOpt("s3_store_host",
               help="S3 endpoint: http(s)://host[:port] (http:// when no scheme is given)."),
    cfg.StrOpt("s3_store_region_name", default="", help="Region; empty: us-east-1."),
    cfg.StrOpt("s3_store_access_key", secret=True, help="Access key."),
    cfg.StrOpt("s3_store_secret_key", secret=True, help="Secret key."),
    cfg.StrOpt("s3_store_bucket", help="Bucket of the images."),
    cfg.BoolOpt("s3_store_create_bucket_on_put", default=False,
                help="Create the bucket on the first upload when it is missing."),
    cfg.StrOpt("s3_store_bucket_url_format", default="auto",
               choices=("auto", "path", "virtual"),
               help="Addressing: path (host/bucket/key) or virtual (bucket.host/key)."),
    cfg.IntOpt("s3_store_large_object_size", default=100, min=0,
               help="Size in MB from which a multipart upload is used (0: always)."),
    cfg.IntOpt("s3_store_large_object_chunk_size", default=10, min=5,
               help="Size in MB of each multipart part (at least 5)."),
    cfg.IntOpt("s3_store_thread_pools", default=10, min=1,
               help="Parts uploaded in parallel (and held in memory) per upload."),
    cfg.StrOpt("s3_store_cacert", default="",
               help="CA bundle to verify the server certificate."),
]


def legacy_spelling(opts: list[cfg.Opt]) -> list[cfg.Opt]:
    """Copies of ``opts`` that also read the old [DEFAULT] spelling, deprecated."""
    copies = []
    for opt in opts:
        copy = cfg.Opt.__new__(type(opt))
        copy.__dict__.update(opt.__dict__)
        copy.deprecated_opts = [*opt.deprecated_opts, cfg.DeprecatedOpt(opt.name, "DEFAULT")]
        copies.append(copy)
    return copies
