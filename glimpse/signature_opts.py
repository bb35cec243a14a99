"""Options of image signature verification: castellan's own [key_manager] and
[barbican] options (the option objects castellan registers itself, so the two never
disagree) and Glimpse's one addition in [DEFAULT]."""

from __future__ import annotations

from oslo_config import cfg

signature_opts = [
    cfg.BoolOpt(
        "verify_signature_certificate_dates",
        default=True,
        help="(Glimpse) Refuse an image signature whose X.509 certificate is outside its "
        "validity period (not yet valid or expired) at upload or import time. Glance "
        "does not look at the dates; set this to false to accept such certificates as "
        "Glance does.",
    ),
]


def opt_groups() -> list[tuple[str | None, list[cfg.Opt]]]:
    # Imported here: castellan pulls in barbicanclient, needed only with these options.
    from castellan import key_manager
    from castellan.key_manager import barbican_key_manager

    return [
        (None, signature_opts),
        ("key_manager", list(key_manager.key_manager_opts)),
        ("barbican", list(barbican_key_manager._barbican_opts)),
    ]
