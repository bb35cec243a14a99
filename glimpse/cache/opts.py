"""Options of the API-node image cache ([DEFAULT], Glance's names where it has them).

glimpse.config registers them with the rest; this module imports nothing heavy.
"""

from __future__ import annotations

from oslo_config import cfg

DRIVERS = ("centralized_db", "sqlite", "xattr")

cache_opts = [
    cfg.StrOpt("image_cache_dir",
               help="Directory of this node's image cache. The cache (and the cache API, "
               "versions 2.14 to 2.18) is on exactly when this is set."),
    cfg.StrOpt("image_cache_driver", default="centralized_db", choices=DRIVERS,
               help="Where the cache keeps its records (hits, last access): "
               "'centralized_db' in the main database, one set per node keyed by "
               "worker_self_reference_url; 'sqlite' in a file of the cache directory; "
               "'xattr' in extended attributes of the cached files (the filesystem must "
               "support user xattrs)."),
    cfg.StrOpt("image_cache_sqlite_db", default="cache.db",
               help="File name, in image_cache_dir, of the 'sqlite' driver's database."),
    cfg.IntOpt("image_cache_max_size", default=10 * 1024**3, min=0,
               help="Bytes the cache may hold. Glimpse's background pruner keeps it below "
               "this (least recently used first) without a cron job; an image larger than "
               "this is never cached."),
    cfg.IntOpt("image_cache_stall_time", default=86400, min=0,
               help="Seconds after which a partial cache file nobody writes any more is "
               "removed by the cleaner."),
    cfg.StrOpt("image_cache_min_free_space", default="5%",
               help="(Glimpse) Free space the cache never eats into: no copy starts when the "
               "cache's filesystem would have less than this left after it. A percentage of "
               "the filesystem ('5%') or a size ('2GB', 1024-based units, or bytes)."),
    cfg.IntOpt("image_cache_max_concurrent_fills", default=4, min=1,
               help="(Glimpse) Images one API worker copies into its cache at the same time; "
               "a miss beyond this is served from the store without being cached, so a cold "
               "start does not saturate the back end."),
    cfg.IntOpt("image_cache_prune_interval", default=60, min=0,
               help="(Glimpse) Seconds between two passes of the background pruner and "
               "cleaner (size limit, invalid and stalled files, copies of deleted images); "
               "0 disables the periodic pass (a fill still prunes to make room)."),
    cfg.IntOpt("cache_prefetcher_interval", default=300, min=1,
               help="Seconds between two passes of the prefetcher over the queued images. "
               "An image queued through the cache API is cached at once; the periodic pass "
               "retries the ones that could not be."),
]

OPT_GROUPS: list[tuple[str | None, list[cfg.Opt]]] = [(None, cache_opts)]
