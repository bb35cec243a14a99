"""Who sees which image: list (GET /v2/images) and show (GET /v2/images/{id}).

The rules asserted here are Glance's (glance/db/sqlalchemy/api.py
``_select_images_query`` and ``_image_get_all``, ``db/utils.is_image_visible``):

* a regular user's candidates are public and community images, every image of
  its own project, and shared images its project is a member of with the
  requested ``member_status`` (default ``accepted``);
* an admin's candidates are all images, whatever the membership;
* ``visibility=X`` keeps only X, ``visibility=all`` keeps every candidate, and
  no visibility keeps every candidate except community images of other
  projects (so even an admin's default list leaves those out);
* show works for the owner, for anyone on public and community images, and for
  a member of a shared image in any member status; otherwise 404.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from tests.conftest import as_project

A, B, C, D = (as_project(p) for p in ("proj-a", "proj-b", "proj-c", "proj-d"))
ADMIN: dict[str, str] = {}  # noauth without identity headers: admin, no project
ADMIN_OF_A = as_project("proj-a", roles="admin,member,reader")
ADMIN_OF_OPS = as_project("ops", roles="admin,member,reader")
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}


def make(client, headers: dict[str, str], name: str, visibility: str) -> str:  # noqa: ANN001
    r = client.post("/v2/images", json={"name": name, "visibility": visibility},
                    headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def share(client, image_id: str, member: dict[str, str],  # noqa: ANN001
          status: str | None = None) -> None:
    project = member["X-Project-Id"]
    r = client.post(f"/v2/images/{image_id}/members", json={"member": project}, headers=A)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    if status is not None:
        set_status(client, image_id, member, status)


def set_status(client, image_id: str, member: dict[str, str], status: str) -> None:  # noqa: ANN001
    project = member["X-Project-Id"]
    r = client.put(f"/v2/images/{image_id}/members/{project}", json={"status": status},
                   headers=member)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == status


def build_world(client) -> dict[str, str]:  # noqa: ANN001
    """Images of projects A and B in every visibility, A's shared ones with members."""
    w = {
        "pub": make(client, ADMIN_OF_OPS, "pub", "public"),
        "a_pub": make(client, ADMIN_OF_A, "a_pub", "public"),
        "a_priv": make(client, A, "a_priv", "private"),
        "a_shared_none": make(client, A, "a_shared_none", "shared"),
        "a_comm": make(client, A, "a_comm", "community"),
        "a_pending": make(client, A, "a_pending", "shared"),
        "a_accepted": make(client, A, "a_accepted", "shared"),
        "a_rejected": make(client, A, "a_rejected", "shared"),
        "a_for_c": make(client, A, "a_for_c", "shared"),
        "b_priv": make(client, B, "b_priv", "private"),
        "b_shared": make(client, B, "b_shared", "shared"),
        "b_comm": make(client, B, "b_comm", "community"),
    }
    share(client, w["a_pending"], B)
    share(client, w["a_accepted"], B, "accepted")
    share(client, w["a_rejected"], B, "rejected")
    share(client, w["a_for_c"], C, "accepted")
    return w


def listed(client, headers: dict[str, str], w: dict[str, str],  # noqa: ANN001
           **params: str) -> set[str]:
    """Names (keys of ``w``) of the listed images; every page, so limits never hide one."""
    names = {v: k for k, v in w.items()}
    query: list[tuple[str, str]] = [*params.items(), ("limit", "100")]
    r = client.get("/v2/images", params=query, headers=headers)
    assert r.status_code == 200, (params, r.text)
    doc = r.json()
    assert "next" not in doc
    return {names[i["id"]] for i in doc["images"]}


def shown(client, headers: dict[str, str], image_id: str) -> int:  # noqa: ANN001
    return client.get(f"/v2/images/{image_id}", headers=headers).status_code


A_OWN = {"a_pub", "a_priv", "a_shared_none", "a_comm", "a_pending", "a_accepted",
         "a_rejected", "a_for_c"}
B_OWN = {"b_priv", "b_shared", "b_comm"}
PUBLIC = {"pub", "a_pub"}
COMMUNITY = {"a_comm", "b_comm"}
A_SHARED = {"a_shared_none", "a_pending", "a_accepted", "a_rejected", "a_for_c"}
EVERYTHING = A_OWN | B_OWN | {"pub"}


def test_owner_lists_its_own_images_of_every_visibility(client):
    w = build_world(client)
    assert listed(client, A, w) == A_OWN | PUBLIC
    assert listed(client, A, w, visibility="all") == A_OWN | PUBLIC | COMMUNITY
    assert listed(client, A, w, visibility="private") == {"a_priv"}
    assert listed(client, A, w, visibility="public") == PUBLIC
    assert listed(client, A, w, visibility="community") == COMMUNITY
    # Its own shared images, whatever their members did (member_status is
    # about the caller's own memberships).
    assert listed(client, A, w, visibility="shared") == A_SHARED
    assert listed(client, A, w, visibility="shared", member_status="rejected") == A_SHARED
    for name in A_OWN:
        assert shown(client, A, w[name]) == 200, name
    assert shown(client, A, w["b_priv"]) == 404
    assert shown(client, A, w["b_shared"]) == 404


def test_member_lists_shared_image_only_once_accepted(client):
    w = build_world(client)
    # B's own community image is in its default list; A's is not.
    assert listed(client, B, w) == B_OWN | PUBLIC | {"a_accepted"}
    assert listed(client, B, w, member_status="accepted") == B_OWN | PUBLIC | {"a_accepted"}
    assert listed(client, B, w, member_status="pending") == B_OWN | PUBLIC | {"a_pending"}
    assert listed(client, B, w, member_status="rejected") == B_OWN | PUBLIC | {"a_rejected"}
    assert listed(client, B, w, member_status="all") == (
        B_OWN | PUBLIC | {"a_pending", "a_accepted", "a_rejected"})
    # Accepting a pending image puts it in the default list.
    set_status(client, w["a_pending"], B, "accepted")
    assert listed(client, B, w) == B_OWN | PUBLIC | {"a_accepted", "a_pending"}


def test_visibility_filters_for_a_member(client):
    w = build_world(client)
    assert listed(client, B, w, visibility="shared") == {"b_shared", "a_accepted"}
    assert listed(client, B, w, visibility="shared", member_status="pending") == {
        "b_shared", "a_pending"}
    assert listed(client, B, w, visibility="shared", member_status="rejected") == {
        "b_shared", "a_rejected"}
    assert listed(client, B, w, visibility="shared", member_status="all") == {
        "b_shared", "a_pending", "a_accepted", "a_rejected"}
    assert listed(client, B, w, visibility="private") == {"b_priv"}
    assert listed(client, B, w, visibility="public") == PUBLIC
    assert listed(client, B, w, visibility="community") == COMMUNITY
    assert listed(client, B, w, visibility="all") == B_OWN | PUBLIC | COMMUNITY | {"a_accepted"}
    assert listed(client, B, w, visibility="all", member_status="all") == (
        B_OWN | PUBLIC | COMMUNITY | {"a_pending", "a_accepted", "a_rejected"})


def test_show_rules_for_other_projects(client):
    w = build_world(client)
    # A member reads the shared image in any member status.
    for name in ("a_pending", "a_accepted", "a_rejected"):
        assert shown(client, B, w[name]) == 200, name
    # Public and community images are readable by anyone.
    for headers in (B, C, D):
        for name in ("pub", "a_pub", "a_comm", "b_comm"):
            assert shown(client, headers, w[name]) == 200, name
    # Private images and shared images without a membership are not there at all.
    for headers, name in ((B, "a_priv"), (B, "a_shared_none"), (B, "a_for_c"),
                          (C, "a_accepted"), (C, "b_priv"), (D, "a_pending"),
                          (D, "a_priv"), (D, "b_shared")):
        r = client.get(f"/v2/images/{w[name]}", headers=headers)
        assert r.status_code == 404, (headers["X-Project-Id"], name)
        assert r.json()["code"].startswith("404")
    assert shown(client, C, w["a_for_c"]) == 200


def test_lists_of_other_projects(client):
    w = build_world(client)
    assert listed(client, C, w) == PUBLIC | {"a_for_c"}
    assert listed(client, C, w, visibility="shared") == {"a_for_c"}
    assert listed(client, D, w) == PUBLIC
    assert listed(client, D, w, member_status="all") == PUBLIC
    assert listed(client, D, w, visibility="shared", member_status="all") == set()
    assert listed(client, D, w, visibility="private") == set()
    assert listed(client, D, w, visibility="community") == COMMUNITY
    assert listed(client, D, w, visibility="all") == PUBLIC | COMMUNITY


def test_admin_listing(client):
    w = build_world(client)
    # Without a project, the admin's default list is everything but community.
    assert listed(client, ADMIN, w) == EVERYTHING - COMMUNITY
    assert listed(client, ADMIN, w, visibility="all") == EVERYTHING
    assert listed(client, ADMIN, w, visibility="community") == COMMUNITY
    assert listed(client, ADMIN, w, visibility="private") == {"a_priv", "b_priv"}
    assert listed(client, ADMIN, w, visibility="public") == PUBLIC
    # Every shared image, whatever the memberships: member_status does not
    # narrow an admin's list.
    all_shared = A_SHARED | {"b_shared"}
    assert listed(client, ADMIN, w, visibility="shared") == all_shared
    assert listed(client, ADMIN, w, visibility="shared", member_status="pending") == all_shared
    assert listed(client, ADMIN, w, member_status="rejected") == EVERYTHING - COMMUNITY
    # An admin scoped to a project also gets that project's community images.
    assert listed(client, ADMIN_OF_A, w) == EVERYTHING - {"b_comm"}
    assert listed(client, ADMIN_OF_A, w, visibility="all") == EVERYTHING
    for name, image_id in w.items():
        assert shown(client, ADMIN, image_id) == 200, name


def test_membership_and_visibility_changes_take_effect(client):
    w = build_world(client)
    image = w["a_accepted"]
    set_status(client, image, B, "rejected")
    assert "a_accepted" not in listed(client, B, w)
    assert shown(client, B, image) == 200
    # Removing the member hides the image from lists and from show.
    r = client.delete(f"/v2/images/{image}/members/proj-b", headers=A)
    assert r.status_code == 204
    assert "a_accepted" not in listed(client, B, w, visibility="all", member_status="all")
    assert shown(client, B, image) == 404
    # A shared image made private is gone for its members, memberships or not.
    other = w["a_pending"]
    set_status(client, other, B, "accepted")
    assert "a_pending" in listed(client, B, w)
    r = client.patch(f"/v2/images/{other}",
                     json=[{"op": "replace", "path": "/visibility", "value": "private"}],
                     headers={**A, **PATCH})
    assert r.status_code == 200, r.text
    assert "a_pending" not in listed(client, B, w, visibility="all", member_status="all")
    assert shown(client, B, other) == 404
    # A community image made public enters everyone's default list.
    r = client.patch(f"/v2/images/{w['a_comm']}",
                     json=[{"op": "replace", "path": "/visibility", "value": "public"}],
                     headers={**ADMIN, **PATCH})
    assert r.status_code == 200, r.text
    assert "a_comm" in listed(client, D, w)


def test_paging_a_members_view(client):
    w = build_world(client)
    names = {v: k for k, v in w.items()}
    expected = B_OWN | PUBLIC | COMMUNITY | {"a_pending", "a_accepted", "a_rejected"}
    for sort in ("name:asc", "created_at:desc", "status:asc,name:desc"):
        seen: list[str] = []
        params: list[tuple[str, str]] = [("visibility", "all"), ("member_status", "all"),
                                         ("sort", sort), ("limit", "2")]
        for _ in range(20):
            r = client.get("/v2/images", params=params, headers=B)
            assert r.status_code == 200, r.text
            doc = r.json()
            seen += [names[i["id"]] for i in doc["images"]]
            if "next" not in doc:
                break
            params = parse_qsl(urlsplit(doc["next"]).query)
        assert sorted(seen) == sorted(expected), sort
    # Another project's private image is no marker for B.
    r = client.get("/v2/images", params={"marker": w["a_priv"]}, headers=B)
    assert r.status_code == 400
    # A shared image B was invited to is, even before B accepts it.
    r = client.get("/v2/images", params={"marker": w["a_pending"]}, headers=B)
    assert r.status_code == 200
