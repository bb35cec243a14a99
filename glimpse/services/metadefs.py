"""Metadata definitions use cases (namespaces, objects, properties, resource
type associations, tags) with Glance's visibility and policy behaviour.

A namespace another project keeps private is "not found" for non-admins, on
reads and writes alike (as is any namespace get_metadef_namespace refuses);
after that each operation checks its own rule, refusals being 403. Documents
returned are plain dicts (see glimpse.domain.metadefs); the API adds links.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from glimpse.context import RequestContext
from glimpse.db import metadefs_repo as repo
from glimpse.db.models import MetadefNamespace
from glimpse.domain import metadefs as dom
from glimpse.errors import BadRequest, Conflict, Forbidden, NotFound, RequestEntityTooLarge
from glimpse.policy import metadef_target
from glimpse.services.runtime import Runtime

KIND_NAMES = {"objects": "object", "properties": "property", "tags": "tag"}

# Limits Glance does not have (seed 001 §1.8: unlimited metadef resources are a
# denial-of-service risk once writes are opened to users). They apply to API
# writes, not to `glimpse db load-metadefs`; -1 means unlimited. The defaults
# leave room for Glance's standard catalogue many times over.
LIMITS_GROUP = "metadef_limits"
LIMIT_OPTS = [
    cfg.IntOpt("namespaces_per_project", default=200, min=-1,
               help="Namespaces one project may own; -1 for no limit."),
    cfg.IntOpt("objects_per_namespace", default=200, min=-1,
               help="Objects in one namespace; -1 for no limit."),
    cfg.IntOpt("properties_per_namespace", default=500, min=-1,
               help="Properties in one namespace; -1 for no limit."),
    cfg.IntOpt("tags_per_namespace", default=500, min=-1,
               help="Tags in one namespace; -1 for no limit."),
]


def _limits(conf: cfg.ConfigOpts) -> Any:
    """The [metadef_limits] group, registered on first use."""
    if LIMITS_GROUP not in conf:
        conf.register_opts(LIMIT_OPTS, group=LIMITS_GROUP)
    return conf[LIMITS_GROUP]


def _check_limit(limit: int, count: int, what: str) -> None:
    if limit >= 0 and count > limit:
        raise RequestEntityTooLarge(f"Maximum number of {what} exceeded (limit {limit}).")


def _check_contents_limits(rt: Runtime, session: Session, ns: MetadefNamespace) -> None:
    limits = _limits(rt.conf)
    for kind in ("objects", "properties", "tags"):
        _check_limit(getattr(limits, f"{kind}_per_namespace"),
                     repo.count_children(session, ns.id, kind),
                     f"metadef {kind} in namespace {ns.namespace}")


def _not_found(name: str) -> NotFound:
    return NotFound(f"Metadata definition namespace={name} was not found.")


def _duplicate(kind: str, name: str, namespace: str) -> Conflict:
    return Conflict(f"A metadata definition {kind} with name={name} already exists in "
                    f"namespace={namespace}.")


def _target(ns: MetadefNamespace) -> dict[str, Any]:
    return {"owner": ns.owner, "visibility": ns.visibility}


def _visible(ctx: RequestContext, ns: MetadefNamespace) -> bool:
    return ctx.is_admin or ns.visibility == "public" or (
        ctx.project_id is not None and ns.owner == ctx.project_id)


def _load(rt: Runtime, session: Session, ctx: RequestContext, name: str,
          rule: str | None = None) -> MetadefNamespace:
    """The namespace ``name`` if the caller may see it (else 404), after
    checking ``rule`` on it (else 403)."""
    ns = repo.get_namespace(session, name)
    if ns is None or not _visible(ctx, ns):
        raise _not_found(name)
    target = metadef_target(ctx, _target(ns))
    if not rt.policy.check(ctx, "get_metadef_namespace", target):
        raise _not_found(name)
    if rule is not None:
        rt.policy.enforce(ctx, rule, target)
    return ns


def _check_unprotected(ns: MetadefNamespace) -> None:
    if ns.protected:
        raise Forbidden(f"Metadata definition namespace {ns.namespace} is protected and "
                        "cannot be deleted.")


# ---------------------------------------------------------------- namespaces


@dataclass
class NamespaceQuery:
    visibility: str | None = None
    resource_types: list[str] | None = None
    sort_key: str = "created_at"
    sort_dir: str = "desc"
    limit: int = 25
    marker: str | None = None


def _associations(session: Session, ns: MetadefNamespace) -> list[dict[str, Any]]:
    return [dom.association_doc(a, name) for a, name in repo.list_associations(session, ns.id)]


def list_namespaces(rt: Runtime, ctx: RequestContext, query: NamespaceQuery,
                    ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of namespaces (each with its resource type associations) and
    the marker of the next page, if there may be one."""
    rt.policy.enforce(ctx, "get_metadef_namespaces", metadef_target(ctx))
    # Each listed namespace carries its resource type associations.
    rt.policy.enforce(ctx, "list_metadef_resource_types", metadef_target(ctx))
    with rt.db.read() as session:
        marker = None
        if query.marker is not None:
            marker = repo.get_namespace(session, query.marker)
            if marker is None or not _visible(ctx, marker):
                raise _not_found(query.marker)
        rows = repo.list_namespaces(
            session, visible_to=ctx.project_id, all_visible=ctx.is_admin,
            visibility=query.visibility, resource_types=query.resource_types,
            sort_key=query.sort_key, sort_dir=query.sort_dir, limit=query.limit,
            marker=marker)
        docs = []
        for row in rows:
            if not rt.policy.check(ctx, "get_metadef_namespace",
                                   metadef_target(ctx, _target(row))):
                continue
            doc = dom.namespace_doc(row)
            associations = _associations(session, row)
            if associations:
                doc["resource_type_associations"] = associations
            docs.append(doc)
    next_marker = rows[-1].namespace if docs and len(docs) == query.limit else None
    return docs, next_marker


def _full_doc(session: Session, ns: MetadefNamespace,
              resource_type: str | None = None) -> dict[str, Any]:
    doc = dom.namespace_doc(ns)
    associations = repo.list_associations(session, ns.id)
    prefix = ""
    if resource_type is not None:
        for assoc, name in associations:
            if name == resource_type:
                prefix = assoc.prefix or ""
    if associations:
        doc["resource_type_associations"] = [dom.association_doc(a, n)
                                             for a, n in associations]
    properties = repo.list_children(session, ns.id, "properties")
    if properties:
        doc["properties"] = {}
        for row in properties:
            definition = dom.property_doc(row, prefix)
            doc["properties"][definition.pop("name")] = definition
    objects = repo.list_children(session, ns.id, "objects")
    if objects:
        doc["objects"] = [dom.object_doc(row) for row in objects]
    tags = repo.list_children(session, ns.id, "tags")
    if tags:
        doc["tags"] = [{"name": row.name} for row in tags]
    return doc


def get_namespace(rt: Runtime, ctx: RequestContext, name: str,
                  resource_type: str | None = None) -> dict[str, Any]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name)
        target = metadef_target(ctx, _target(ns))
        for rule in ("list_metadef_resource_types", "get_metadef_objects",
                     "get_metadef_properties", "get_metadef_tags"):
            rt.policy.enforce(ctx, rule, target)
        return _full_doc(session, ns, resource_type)


def _namespace_values(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "namespace": body["namespace"],
        "display_name": body.get("display_name"),
        "description": body.get("description"),
        "visibility": body.get("visibility") or "private",
        "protected": bool(body.get("protected") or False),
        "owner": body.get("owner") or ctx.owner,
    }


def _add_contents(session: Session, ns: MetadefNamespace, body: dict[str, Any]) -> None:
    """Create what a namespace document holds (on create and on load)."""
    for assoc in body.get("resource_type_associations") or []:
        rtype = repo.ensure_resource_type(session, assoc["name"])
        if repo.get_association(session, ns.id, rtype.id) is None:
            repo.add_association(session, ns.id, rtype.id, assoc.get("prefix"),
                                 assoc.get("properties_target"))
    for name, definition in (body.get("properties") or {}).items():
        dom.check_property_definition(name, definition)
        if repo.get_child(session, ns.id, "properties", name) is not None:
            raise _duplicate("property", name, ns.namespace)
        repo.add_child(session, ns.id, "properties",
                       {"name": name, "json_schema": dom.property_schema(definition)})
    for obj in body.get("objects") or []:
        if repo.get_child(session, ns.id, "objects", obj["name"]) is not None:
            raise _duplicate("object", obj["name"], ns.namespace)
        repo.add_child(session, ns.id, "objects", dom.object_values(obj))
    for tag in body.get("tags") or []:
        if repo.get_child(session, ns.id, "tags", tag["name"]) is not None:
            raise _duplicate("tag", tag["name"], ns.namespace)
        repo.add_child(session, ns.id, "tags", {"name": tag["name"]})


def create_namespace(rt: Runtime, ctx: RequestContext, body: dict[str, Any],
                     ) -> dict[str, Any]:
    rt.policy.enforce(ctx, "add_metadef_namespace", metadef_target(ctx))
    for key, rule in (("resource_type_associations", "add_metadef_resource_type_association"),
                      ("objects", "add_metadef_object"), ("properties", "add_metadef_property"),
                      ("tags", "add_metadef_tag")):
        if body.get(key):
            rt.policy.enforce(ctx, rule, metadef_target(ctx))
    values = _namespace_values(ctx, body)
    conflict = Conflict(f"A metadata definition namespace with name={values['namespace']} "
                        "already exists.")
    try:
        with rt.db.write() as session, session.begin():
            if repo.get_namespace(session, values["namespace"]) is not None:
                raise conflict
            ns = repo.create_namespace(session, values)
            _check_limit(_limits(rt.conf).namespaces_per_project,
                         repo.count_namespaces(session, values["owner"]),
                         f"metadef namespaces of project {values['owner']}")
            _add_contents(session, ns, body)
            _check_contents_limits(rt, session, ns)
            doc = _full_doc(session, ns)
    except IntegrityError:
        raise conflict from None
    rt.notifier.metadef_namespace_created(doc)
    return doc


def update_namespace(rt: Runtime, ctx: RequestContext, name: str, body: dict[str, Any],
                     ) -> dict[str, Any]:
    """PUT replaces the namespace's own fields (missing ones take their defaults)."""
    values = _namespace_values(ctx, body)
    conflict = Conflict(f"A metadata definition namespace with name={values['namespace']} "
                        "already exists.")
    try:
        with rt.db.write() as session, session.begin():
            ns = _load(rt, session, ctx, name, "modify_metadef_namespace")
            if values["namespace"] != name and repo.get_namespace(
                    session, values["namespace"]) is not None:
                raise conflict
            repo.update_namespace(session, ns, values)
            doc = _full_doc(session, ns)
    except IntegrityError:
        raise conflict from None
    rt.notifier.metadef_event("metadef_namespace.update", doc["namespace"], doc, old_name=name)
    return doc


def delete_namespace(rt: Runtime, ctx: RequestContext, name: str) -> None:
    with rt.db.write() as session, session.begin():
        ns = _load(rt, session, ctx, name, "delete_metadef_namespace")
        _check_unprotected(ns)
        doc = dom.namespace_doc(ns)
        repo.delete_namespace(session, ns)
    rt.notifier.metadef_event("metadef_namespace.delete", name, doc)


def delete_contents(rt: Runtime, ctx: RequestContext, name: str, kind: str) -> None:
    """DELETE /v2/metadefs/namespaces/{ns}/{objects|properties|tags}: as Glance,
    this needs the right to delete the namespace (and, for tags, delete_metadef_tags)
    and a namespace that is not protected."""
    with rt.db.write() as session, session.begin():
        ns = _load(rt, session, ctx, name, "delete_metadef_namespace")
        if kind == "tags":
            rt.policy.enforce(ctx, "delete_metadef_tags", metadef_target(ctx, _target(ns)))
        _check_unprotected(ns)
        repo.delete_children(session, ns.id, kind)
        doc = dom.namespace_doc(ns)
    rt.notifier.metadef_event(f"metadef_namespace.delete_{kind}", name, doc)


# ---------------------------------------------------------------- objects


def _child(session: Session, ns: MetadefNamespace, kind: str, child: str) -> Any:
    row = repo.get_child(session, ns.id, kind, child)
    if row is None:
        raise NotFound(f"Metadata definition {KIND_NAMES[kind]} not found for "
                       f"namespace={ns.namespace} and {KIND_NAMES[kind]}={child}")
    return row


def list_objects(rt: Runtime, ctx: RequestContext, name: str) -> list[dict[str, Any]]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_objects")
        return [dom.object_doc(row) for row in repo.list_children(session, ns.id, "objects")]


def get_object(rt: Runtime, ctx: RequestContext, name: str, obj: str) -> dict[str, Any]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_object")
        return dom.object_doc(_child(session, ns, "objects", obj))


def _write_child(rt: Runtime, ctx: RequestContext, name: str, rule: str, kind: str,
                 child_name: str, values: dict[str, Any], old_name: str | None = None,
                 ) -> Any:
    """Add (old_name None) or replace a child; a name taken by another is 409."""
    try:
        with rt.db.write() as session, session.begin():
            ns = _load(rt, session, ctx, name, rule)
            row = None if old_name is None else _child(session, ns, kind, old_name)
            if (row is None or child_name != old_name) and repo.get_child(
                    session, ns.id, kind, child_name) is not None:
                raise _duplicate(KIND_NAMES[kind], child_name, name)
            if row is None:
                added = repo.add_child(session, ns.id, kind, values)
                _check_limit(getattr(_limits(rt.conf), f"{kind}_per_namespace"),
                             repo.count_children(session, ns.id, kind),
                             f"metadef {kind} in namespace {name}")
                return added
            return repo.update_child(session, row, values)
    except IntegrityError:
        raise _duplicate(KIND_NAMES[kind], child_name, name) from None


def create_object(rt: Runtime, ctx: RequestContext, name: str, body: dict[str, Any],
                  ) -> dict[str, Any]:
    values = dom.object_values(body)
    doc = dom.object_doc(_write_child(rt, ctx, name, "add_metadef_object", "objects",
                                      body["name"], values))
    rt.notifier.metadef_event("metadef_object.create", name, doc)
    return doc


def update_object(rt: Runtime, ctx: RequestContext, name: str, obj: str,
                  body: dict[str, Any]) -> dict[str, Any]:
    values = dom.object_values(body)
    doc = dom.object_doc(_write_child(rt, ctx, name, "modify_metadef_object", "objects",
                                      body["name"], values, old_name=obj))
    rt.notifier.metadef_event("metadef_object.update", name, doc, old_name=obj)
    return doc


def _delete_child(rt: Runtime, ctx: RequestContext, name: str, rule: str, kind: str,
                  child: str) -> None:
    render, event = _CHILD_EVENTS[kind]
    with rt.db.write() as session, session.begin():
        ns = _load(rt, session, ctx, name, rule)
        row = _child(session, ns, kind, child)
        doc = render(row)
        repo.delete_child(session, row)
    rt.notifier.metadef_event(f"{event}.delete", name, doc)


# How a deleted child is described, and the group of its events.
_CHILD_EVENTS = {
    "objects": (dom.object_doc, "metadef_object"),
    "properties": (dom.property_doc, "metadef_property"),
    "tags": (dom.tag_doc, "metadef_tag"),
}


def delete_object(rt: Runtime, ctx: RequestContext, name: str, obj: str) -> None:
    _delete_child(rt, ctx, name, "delete_metadef_object", "objects", obj)


# ---------------------------------------------------------------- properties


def _prefix(session: Session, ns: MetadefNamespace, resource_type: str | None) -> str:
    if resource_type is None:
        return ""
    for assoc, rt_name in repo.list_associations(session, ns.id):
        if rt_name == resource_type:
            return assoc.prefix or ""
    return ""


def list_properties(rt: Runtime, ctx: RequestContext, name: str,
                    resource_type: str | None = None) -> dict[str, Any]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_properties")
        prefix = _prefix(session, ns, resource_type)
        result: dict[str, Any] = {}
        for row in repo.list_children(session, ns.id, "properties"):
            definition = dom.property_doc(row, prefix)
            result[definition.pop("name")] = definition
        return result


def get_property(rt: Runtime, ctx: RequestContext, name: str, prop: str,
                 resource_type: str | None = None) -> dict[str, Any]:
    """With ``resource_type``, ``prop`` carries that association's prefix,
    which must be there and is stripped to find the property."""
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_property")
        prefix = ""
        if resource_type is not None:
            rt.policy.enforce(ctx, "get_metadef_resource_type",
                              metadef_target(ctx, _target(ns)))
            if resource_type not in {n for _, n in repo.list_associations(session, ns.id)}:
                raise NotFound(f"Resource type {resource_type} is not associated with "
                               f"namespace {name}")
            prefix = _prefix(session, ns, resource_type)
            if not (prefix and prop.startswith(prefix)):
                raise NotFound(f"Property {prop} does not start with the expected resource "
                               f"type association prefix of '{prefix}'.")
            prop = prop[len(prefix):]
        return dom.property_doc(_child(session, ns, "properties", prop), prefix)


def _property_values(body: dict[str, Any]) -> dict[str, Any]:
    dom.check_property_definition(body["name"], body)
    return {"name": body["name"], "json_schema": dom.property_schema(body)}


def create_property(rt: Runtime, ctx: RequestContext, name: str, body: dict[str, Any],
                    ) -> dict[str, Any]:
    row = _write_child(rt, ctx, name, "add_metadef_property", "properties", body["name"],
                       _property_values(body))
    doc = dom.property_doc(row)
    rt.notifier.metadef_event("metadef_property.create", name, doc)
    return doc


def update_property(rt: Runtime, ctx: RequestContext, name: str, prop: str,
                    body: dict[str, Any]) -> dict[str, Any]:
    row = _write_child(rt, ctx, name, "modify_metadef_property", "properties",
                       body["name"], _property_values(body), old_name=prop)
    doc = dom.property_doc(row)
    rt.notifier.metadef_event("metadef_property.update", name, doc, old_name=prop)
    return doc


def delete_property(rt: Runtime, ctx: RequestContext, name: str, prop: str) -> None:
    _delete_child(rt, ctx, name, "remove_metadef_property", "properties", prop)


# ---------------------------------------------------------------- resource types


def list_resource_types(rt: Runtime, ctx: RequestContext) -> list[dict[str, Any]]:
    rt.policy.enforce(ctx, "list_metadef_resource_types", metadef_target(ctx))
    with rt.db.read() as session:
        return [dom.resource_type_doc(row) for row in repo.list_resource_types(session)]


def list_associations(rt: Runtime, ctx: RequestContext, name: str) -> list[dict[str, Any]]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "list_metadef_resource_types")
        if not rt.policy.check(ctx, "get_metadef_resource_type",
                               metadef_target(ctx, _target(ns))):
            return []
        return _associations(session, ns)


def create_association(rt: Runtime, ctx: RequestContext, name: str, body: dict[str, Any],
                       ) -> dict[str, Any]:
    rt_name = body["name"]
    conflict = Conflict(f"The metadata definition resource-type association of "
                        f"resource-type={rt_name} to namespace={name}, already exists.")
    try:
        with rt.db.write() as session, session.begin():
            ns = _load(rt, session, ctx, name, "add_metadef_resource_type_association")
            rtype = repo.ensure_resource_type(session, rt_name)
            if repo.get_association(session, ns.id, rtype.id) is not None:
                raise conflict
            row = repo.add_association(session, ns.id, rtype.id, body.get("prefix"),
                                       body.get("properties_target"))
            doc = dom.association_doc(row, rt_name)
    except IntegrityError:
        raise conflict from None
    rt.notifier.metadef_event("metadef_resource_type.create", name, doc)
    return doc


def delete_association(rt: Runtime, ctx: RequestContext, name: str, rt_name: str) -> None:
    with rt.db.write() as session, session.begin():
        ns = _load(rt, session, ctx, name, "remove_metadef_resource_type_association")
        rtype = repo.get_resource_type(session, rt_name)
        row = None if rtype is None else repo.get_association(session, ns.id, rtype.id)
        if row is None:
            raise NotFound(f"The metadata definition resource-type association of "
                           f"resource-type={rt_name} to namespace={name}, was not found.")
        doc = dom.association_doc(row, rt_name)
        repo.delete_association(session, row)
    rt.notifier.metadef_event("metadef_resource_type.delete", name, doc)


# ---------------------------------------------------------------- tags


def list_tags(rt: Runtime, ctx: RequestContext, name: str) -> list[dict[str, Any]]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_tags")
        return [dom.tag_doc(row) for row in repo.list_children(session, ns.id, "tags")]


def get_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> dict[str, Any]:
    with rt.db.read() as session:
        ns = _load(rt, session, ctx, name, "get_metadef_tag")
        return dom.tag_doc(_child(session, ns, "tags", tag))


def create_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> dict[str, Any]:
    doc = dom.tag_doc(_write_child(rt, ctx, name, "add_metadef_tag", "tags", tag,
                                   {"name": tag}))
    rt.notifier.metadef_event("metadef_tag.create", name, doc)
    return doc


def create_tags(rt: Runtime, ctx: RequestContext, name: str, tags: list[str],
                append: bool) -> list[dict[str, Any]]:
    """Bulk create: replaces all tags unless ``append``; a duplicate name in
    the request (or, when appending, an existing one) is 409."""
    if len(set(tags)) != len(tags):
        raise Conflict(f"A metadata tag with name={_first_duplicate(tags)} already exists "
                       f"in namespace={name}.")
    try:
        with rt.db.write() as session, session.begin():
            ns = _load(rt, session, ctx, name, "add_metadef_tags")
            if not append:
                repo.delete_children(session, ns.id, "tags")
            added = []
            for tag in tags:
                if append and repo.get_child(session, ns.id, "tags", tag) is not None:
                    raise _duplicate("tag", tag, name)
                added.append(dom.tag_doc(repo.add_child(session, ns.id, "tags", {"name": tag})))
            _check_limit(_limits(rt.conf).tags_per_namespace,
                         repo.count_children(session, ns.id, "tags"),
                         f"metadef tags in namespace {name}")
    except IntegrityError:
        raise Conflict(f"A metadata tag already exists in namespace={name}.") from None
    for doc in added:
        rt.notifier.metadef_event("metadef_tag.create", name, doc)
    return [{"name": tag} for tag in tags]


def _first_duplicate(names: list[str]) -> str:
    seen: set[str] = set()
    for item in names:
        if item in seen:
            return item
        seen.add(item)
    return ""


def update_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str, new_name: str,
               ) -> dict[str, Any]:
    doc = dom.tag_doc(_write_child(rt, ctx, name, "modify_metadef_tag", "tags", new_name,
                                   {"name": new_name}, old_name=tag))
    rt.notifier.metadef_event("metadef_tag.update", name, doc, old_name=tag)
    return doc


def delete_tag(rt: Runtime, ctx: RequestContext, name: str, tag: str) -> None:
    _delete_child(rt, ctx, name, "delete_metadef_tag", "tags", tag)


# ---------------------------------------------------------------- definition files
# `glimpse db load-metadefs / export-metadefs / unload-metadefs`, reading and
# writing Glance's definition files: one JSON namespace document per file.

# Glance's loader gives namespaces without an owner to "admin".
LOADED_OWNER = "admin"


@dataclass
class LoadReport:
    loaded: list[str]
    merged: list[str]
    skipped: list[str]


def _file_ctx() -> RequestContext:
    return RequestContext(is_admin=True, project_id=LOADED_OWNER)


def _load_doc(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except ValueError as exc:
            raise BadRequest(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest(f"{path}: expected a JSON object")
    doc = dom.without_timestamps(doc)
    doc.pop("self", None)
    doc.pop("schema", None)
    from glimpse.api import metadef_schemas  # the documents' schema lives with the API

    try:
        metadef_schemas.validate(doc, "namespace")
    except BadRequest as exc:
        raise BadRequest(f"{path}: {exc}") from None
    return doc


def _merge(session: Session, ns: MetadefNamespace, doc: dict[str, Any],
           prefer_new: bool) -> None:
    """Add what the file has and the namespace lacks; with ``prefer_new`` the
    file's version of anything both have wins."""
    for assoc in doc.get("resource_type_associations") or []:
        rtype = repo.ensure_resource_type(session, assoc["name"])
        existing = repo.get_association(session, ns.id, rtype.id)
        if existing is None:
            repo.add_association(session, ns.id, rtype.id, assoc.get("prefix"),
                                 assoc.get("properties_target"))
        elif prefer_new:
            repo.update_child(session, existing, {
                "prefix": assoc.get("prefix"),
                "properties_target": assoc.get("properties_target")})
    for name, definition in (doc.get("properties") or {}).items():
        dom.check_property_definition(name, definition)
        values = {"name": name, "json_schema": dom.property_schema(definition)}
        row = repo.get_child(session, ns.id, "properties", name)
        if row is None:
            repo.add_child(session, ns.id, "properties", values)
        elif prefer_new:
            repo.update_child(session, row, values)
    for obj in doc.get("objects") or []:
        values = dom.object_values(obj)
        row = repo.get_child(session, ns.id, "objects", obj["name"])
        if row is None:
            repo.add_child(session, ns.id, "objects", values)
        elif prefer_new:
            repo.update_child(session, row, values)
    for tag in doc.get("tags") or []:
        if repo.get_child(session, ns.id, "tags", tag["name"]) is None:
            repo.add_child(session, ns.id, "tags", {"name": tag["name"]})


def load_definitions(rt: Runtime, paths: list[str], *, merge: bool = False,
                     prefer_new: bool = False, overwrite: bool = False) -> LoadReport:
    """Load definition files. A namespace already in the database is skipped,
    unless ``merge`` (add what is missing; ``prefer_new``: the file wins on
    what both have) or ``overwrite`` (replace it wholly by the file's)."""
    report = LoadReport([], [], [])
    docs = [_load_doc(path) for path in paths]
    ctx = _file_ctx()
    for doc in docs:
        name = doc["namespace"]
        with rt.db.write() as session, session.begin():
            ns = repo.get_namespace(session, name)
            if ns is not None and overwrite:
                repo.delete_namespace(session, ns)
                ns = None
            if ns is None:
                values = _namespace_values(ctx, doc)
                ns = repo.create_namespace(session, values)
                _add_contents(session, ns, doc)
                report.loaded.append(name)
            elif merge:
                if prefer_new:
                    repo.update_namespace(session, ns, {
                        k: v for k, v in _namespace_values(ctx, doc).items()
                        if k != "owner"})
                _merge(session, ns, doc, prefer_new)
                report.merged.append(name)
            else:
                report.skipped.append(name)
    return report


def export_definitions(rt: Runtime) -> list[dict[str, Any]]:
    """Every namespace as a definition-file document (no timestamps, no owner)."""
    with rt.db.read() as session:
        rows = repo.list_namespaces(session, visible_to=None, all_visible=True,
                                    sort_key="namespace", sort_dir="asc")
        docs = []
        for ns in rows:
            doc = dom.without_timestamps(_full_doc(session, ns))
            doc.pop("owner", None)
            docs.append(doc)
    return docs


def unload_definitions(rt: Runtime) -> int:
    """Delete every namespace (protected ones too) and the resource types that
    were not seeded with the schema. Returns how many namespaces went."""
    with rt.db.write() as session, session.begin():
        rows = repo.list_namespaces(session, visible_to=None, all_visible=True)
        for ns in rows:
            repo.delete_namespace(session, ns)
        repo.delete_unprotected_resource_types(session)
    return len(rows)


def file_name(namespace: str) -> str:
    """As Glance: an exported file is named after its namespace ('/' made safe)."""
    return namespace.replace("/", "_") + ".json"


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=4, ensure_ascii=False) + "\n"
