from __future__ import annotations

import pytest

from glimpse.domain.locations import without_credentials


@pytest.mark.parametrize(("url", "shown"), [
    ("s3://AK:SK@127.0.0.1:8333/bucket/img", "s3://127.0.0.1:8333/bucket/img"),
    ("s3+https://AK:S%2FK@s3.example.org/b/img", "s3+https://s3.example.org/b/img"),
    ("swift+http://acct:user:key@127.0.0.1:8080/auth/v1.0/glance/img",
     "swift+http://127.0.0.1:8080/auth/v1.0/glance/img"),
    ("swift://u:k@auth.example.org/v3/glance/img", "swift://auth.example.org/v3/glance/img"),
    ("swift+config://ref1/glance/img", "swift+config://ref1/glance/img"),
    ("s3://127.0.0.1:8333/bucket/img", "s3://127.0.0.1:8333/bucket/img"),
    # Other schemes are shown as stored (an http location is the user's own URL).
    ("rbd://fsid/images/img/snap", "rbd://fsid/images/img/snap"),
    ("http://user:pw@example.org/img", "http://user:pw@example.org/img"),
    ("file:///var/lib/glance/images/img", "file:///var/lib/glance/images/img"),
    ("s3://[bad", "s3://[bad"),
])
def test_credentials_are_removed_from_object_store_locations(url, shown):
    assert without_credentials(url) == shown
