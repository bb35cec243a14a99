"""Tasks use cases: Glance's (deprecated, admin-only by default) tasks API and
the per-image task list.

Every call of /v2/tasks checks ``tasks_api_access`` first, then the rule of
the operation (``get_tasks``, ``get_task``, ``add_task``). A task is visible
to admins, to its owner's project, and to everyone when it has no owner.
"""

from __future__ import annotations

import uuid
from typing import Any

from glimpse.context import RequestContext
from glimpse.db import tasks_repo
from glimpse.db.tasks_repo import TaskQuery, TaskRecord
from glimpse.errors import BadRequest, Forbidden, GlimpseError, NotFound
from glimpse.services.images import enforce_on_image, load_visible
from glimpse.services.runtime import Runtime

LEGACY_TYPE = "import"


def _target(ctx: RequestContext) -> dict[str, Any]:
    return {"project_id": ctx.project_id} if ctx.project_id else {}


def require_api_access(rt: Runtime, ctx: RequestContext) -> None:
    rt.policy.enforce(ctx, "tasks_api_access", _target(ctx))


def _visible(ctx: RequestContext, task: TaskRecord) -> bool:
    return ctx.is_admin or task.owner is None or (
        ctx.owner is not None and task.owner == ctx.owner)


def list_tasks(rt: Runtime, ctx: RequestContext, query: TaskQuery,
               marker: str | None) -> list[TaskRecord]:
    rt.policy.enforce(ctx, "get_tasks", _target(ctx))
    with rt.db.write() as session, session.begin():
        tasks_repo.soft_delete_expired(session)
    with rt.db.read() as session:
        if not ctx.is_admin and ctx.owner is not None:
            query.owner = ctx.owner
        if marker is not None:
            found = tasks_repo.get_task(session, marker)
            if found is None:
                raise BadRequest(f"Task with the given ID {marker} was not found")
            if not _visible(ctx, found):
                raise Forbidden(f"Forbidding request, task {marker} is not visible")
            query.marker = found
        return tasks_repo.list_tasks(session, query)


def get_task(rt: Runtime, ctx: RequestContext, task_id: str) -> TaskRecord:
    rt.policy.enforce(ctx, "get_task", _target(ctx))
    with rt.db.read() as session:
        task = tasks_repo.get_task(session, task_id) if len(task_id) <= 36 else None
    if task is None:
        raise NotFound(f"Task with the given ID {task_id} was not found")
    if not _visible(ctx, task):
        raise Forbidden(f"Forbidding request, task {task_id} is not visible")
    return task


def create_task(rt: Runtime, ctx: RequestContext, task_type: str, task_input: Any,
                ) -> TaskRecord:
    """Only 'import' tasks run from here; an api_image_import task belongs to
    an image import call and is failed at once."""
    rt.policy.enforce(ctx, "add_task", _target(ctx))
    if task_type == LEGACY_TYPE:
        _check_import_from(rt, task_input)
    task_id = str(uuid.uuid4())
    image_id = task_input.get("image_id") if isinstance(task_input, dict) else None
    with rt.db.write() as session, session.begin():
        created = tasks_repo.create_task(session, {
            "id": task_id, "type": task_type, "status": "pending", "owner": ctx.owner,
            "image_id": image_id if isinstance(image_id, str) else None,
            "request_id": ctx.request_id, "user_id": ctx.user_id, "roles": ctx.roles,
            "input": task_input, **rt.runner.task_values()})
        if task_type == LEGACY_TYPE:
            rt.runner.lease_task(session, task_id, None)
    rt.notifier.task_started(created)
    if task_type == LEGACY_TYPE:
        rt.runner.submit(task_id, ctx)
    else:
        rt.runner.fail(task_id, f"Tasks of type {task_type} are created by the image import "
                       "call (POST /v2/images/{image_id}/import), not by the tasks API")
    with rt.db.read() as session:
        task = tasks_repo.get_task(session, task_id)
    assert task is not None
    return task


def _check_import_from(rt: Runtime, task_input: Any) -> None:
    """Glance checks ``import_from`` before the task exists (400, no task): http(s)
    only, then the web-download URI filter and the address guard, so the tasks
    API is no way around them. The task checks again when it runs."""
    from glimpse.domain.uri_filter import LEGACY_IMPORT, check_legacy_location
    from glimpse.outbound import check_destination

    uri = check_legacy_location(
        task_input.get("import_from") if isinstance(task_input, dict) else None)
    check_destination(rt.conf, uri, LEGACY_IMPORT)


def image_tasks(rt: Runtime, ctx: RequestContext, image_id: str) -> list[TaskRecord]:
    """GET /v2/images/{id}/tasks: the caller must be able to show the image (else 404)."""
    try:
        with rt.db.read() as session:
            image, is_member = load_visible(rt, session, ctx, image_id)
        enforce_on_image(rt, ctx, image, is_member, "get_image")
    except GlimpseError as exc:
        if isinstance(exc, NotFound | Forbidden):
            raise NotFound("The resource could not be found.") from None
        raise
    with rt.db.write() as session, session.begin():
        tasks_repo.soft_delete_expired(session)
    with rt.db.read() as session:
        tasks = tasks_repo.tasks_for_image(session, image_id)
    return [t for t in tasks if _visible(ctx, t)]
