"""Image, member and error documents as Glance renders them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from oslo_config import cfg

from glimpse.db.repository import MemberRecord
from glimpse.domain.images import ImageRecord
from glimpse.domain.locations import without_credentials


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    # Naive UTC; isoformat is several times cheaper than strftime.
    return value.isoformat(timespec="seconds") + "Z"


@dataclass(frozen=True)
class ImageOptions:
    """The options image documents depend on, read from the config once per
    request rather than once per image of a list."""
    show_multiple_locations: bool
    show_image_direct_url: bool
    multi_store: bool

    @classmethod
    def of(cls, conf: cfg.ConfigOpts) -> ImageOptions:
        return cls(bool(conf.show_multiple_locations), bool(conf.show_image_direct_url),
                   bool(conf.enabled_backends))

    @property
    def may_show_locations(self) -> bool:
        return self.show_multiple_locations or self.show_image_direct_url or self.multi_store


# Internal bookkeeping properties Glance never shows to clients.
HIDDEN_PROPERTIES = frozenset({"os_glance_stage_host"})


def image(conf: cfg.ConfigOpts | ImageOptions, img: ImageRecord, show_locations: bool = True,
          show_stores: bool = True) -> dict[str, Any]:
    """The image document. ``show_locations`` is whether the caller may see
    locations (policy get_image_location); they are shown only when
    show_multiple_locations / show_image_direct_url are on as well.
    ``stores`` (with enabled_backends) is shown to everyone who sees the image,
    as in Glance, unless ``show_stores`` is false."""
    doc: dict[str, Any] = {k: v for k, v in img.properties.items()
                           if k not in HIDDEN_PROPERTIES}
    doc.update({
        "id": img.id,
        "name": img.name,
        "status": img.status,
        "visibility": img.visibility,
        "protected": img.protected,
        "os_hidden": img.os_hidden,
        "checksum": img.checksum,
        "os_hash_algo": img.os_hash_algo,
        "os_hash_value": img.os_hash_value,
        "size": img.size,
        "virtual_size": img.virtual_size,
        "min_disk": img.min_disk,
        "min_ram": img.min_ram,
        "disk_format": img.disk_format,
        "container_format": img.container_format,
        "owner": img.owner,
        "created_at": timestamp(img.created_at),
        "updated_at": timestamp(img.updated_at),
        "tags": list(img.tags),
        "self": f"/v2/images/{img.id}",
        "file": f"/v2/images/{img.id}/file",
        "schema": "/v2/schemas/image",
    })
    opts = conf if isinstance(conf, ImageOptions) else ImageOptions.of(conf)
    locations = img.locations if show_locations else []
    stores = [loc["metadata"].get("store") for loc in (img.locations if show_stores else [])
              if loc["metadata"].get("store")]
    if stores and opts.multi_store:
        # One entry per location, as Glance (two http locations show "web,web").
        doc["stores"] = ",".join(stores)
    if opts.show_multiple_locations:
        # Present (possibly empty) whenever the option is on, as Glance does.
        doc["locations"] = [{"url": without_credentials(loc["url"]),
                             "metadata": loc["metadata"]} for loc in locations]
    if opts.show_image_direct_url and locations:
        doc["direct_url"] = without_credentials(locations[0]["url"])
    return doc


def member(m: MemberRecord) -> dict[str, Any]:
    return {
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.status,
        "created_at": timestamp(m.created_at),
        "updated_at": timestamp(m.updated_at),
        "schema": "/v2/schemas/member",
    }


def error(status: int, title: str, message: str) -> dict[str, Any]:
    return {"code": f"{status} {title}", "title": title, "message": message}
