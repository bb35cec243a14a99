"""The API-node image cache: local copies of the images this node serves.

``ImageCache.from_conf`` gives None unless ``image_cache_dir`` is set. The download
path asks it once (glimpse.services.data): a hit is read from the local file; a full
miss starts (or joins) the one fill of that image on this node and follows it while
it is written; a range is served from a copy when there is one and never fills.
"""

from glimpse.cache.core import CacheFillError, FillSource, ImageCache, from_conf

__all__ = ["CacheFillError", "FillSource", "ImageCache", "from_conf"]
