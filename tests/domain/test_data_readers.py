"""The one rule behind the stores' access lists (glimpse.domain.images.data_readers)."""

from __future__ import annotations

import pytest

from glimpse.domain.images import DataReaders, ImageRecord, data_readers

MEMBERS = ["p-pending", "p-accepted", "p-rejected"]


def _image(visibility: str, owner: str | None = "owner") -> ImageRecord:
    return ImageRecord(id="i", name=None, status="active", visibility=visibility, owner=owner)


@pytest.mark.parametrize("visibility", ["public", "community"])
def test_public_and_community_are_read_by_every_project(visibility):
    assert data_readers(_image(visibility), MEMBERS) == DataReaders(public=True)


def test_shared_is_read_by_the_owner_and_every_member_whatever_its_status():
    # The statuses are not even asked: a member may download in each (can_view).
    readers = data_readers(_image("shared"), MEMBERS)
    assert readers == DataReaders(False, ("owner", *MEMBERS))


def test_private_is_read_by_the_owner_only_even_with_members_left():
    assert data_readers(_image("private"), MEMBERS) == DataReaders(False, ("owner",))


def test_no_owner_and_repeated_members():
    readers = data_readers(_image("shared", owner=None), ["m", "m", "n"])
    assert readers == DataReaders(False, ("m", "n"))
    assert data_readers(_image("shared"), ["owner", "m"]).projects == ("owner", "m")
