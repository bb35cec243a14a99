"""Authorization: Glance's policy rules, enforced through oslo.policy.

Rule names and default check strings are those of Glance's secure-RBAC
defaults (project scope, new defaults enforced), so an operator's existing
``policy.yaml`` keeps its meaning. Service functions call :meth:`Policy.enforce`
explicitly with a target built by one of the ``*_target`` helpers below.

Glance's pre-Wallaby ("deprecated") check strings are deliberately not
registered. With ``enforce_new_defaults = False`` Glance ORs them into every
rule (most of them are ``rule:default``, i.e. anyone) and relies on a legacy
owner check in its API layer to stay safe. Glimpse has no such layer, so
registering them would open the image API; without them that option is inert.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from oslo_config import cfg
from oslo_policy import _checks, policy
from oslo_policy import opts as policy_opts

from glimpse import errors
from glimpse.context import RequestContext

DEFAULT_POLICY_FILE = "policy.yaml"

FORBIDDEN_MESSAGE = "You are not authorized to complete %(action)s action."

# --- check-string building blocks (the strings themselves are Glance's) ---

ADMIN = "rule:context_is_admin"
DEFAULT = "rule:default"
SERVICE = "rule:service_api"
METADEF_ADMIN = "rule:metadef_admin"
METADEF_DEFAULT = "rule:metadef_default"

PROJECT_MEMBER = "role:member and project_id:%(project_id)s"
PROJECT_READER = "role:reader and project_id:%(project_id)s"

# The target's member_id is the caller's own project when the caller reached a
# shared image through a membership (see image_target).
IMAGE_MEMBER = "project_id:%(member_id)s"
COMMUNITY = "'community':%(visibility)s"
PUBLIC = "'public':%(visibility)s"
SHARED = "'shared':%(visibility)s"

_VISIBLE_TO_CALLER = (
    f"project_id:%(project_id)s or {IMAGE_MEMBER} or {COMMUNITY} or {PUBLIC} or {SHARED}"
)

ADMIN_OR_PROJECT_MEMBER = f"{ADMIN} or ({PROJECT_MEMBER})"
ADMIN_OR_PROJECT_READER = f"{ADMIN} or ({PROJECT_READER})"
ADMIN_OR_READER_OF_VISIBLE_IMAGE = f"{ADMIN} or (role:reader and ({_VISIBLE_TO_CALLER}))"
ADMIN_OR_MEMBER_OF_VISIBLE_IMAGE = f"{ADMIN} or (role:member and ({_VISIBLE_TO_CALLER}))"
ADMIN_OR_PROJECT_MEMBER_CREATING_OWN = (
    f"{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
)
ADMIN_OR_READER_OF_VISIBLE_NAMESPACE = (
    f"{ADMIN} or (role:reader and (project_id:%(project_id)s or {PUBLIC}))"
)
ADMIN_OR_SHARED_MEMBER = f"{ADMIN} or (role:member and {IMAGE_MEMBER})"
# Glance writes this one without parentheses around the reader clause; the
# string is kept as is because operators diff their files against it.
ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER = (
    f"{ADMIN} or role:reader and (project_id:%(project_id)s or {IMAGE_MEMBER})"
)
SERVICE_OR_PROJECT_MEMBER_CREATING_OWN = (
    f"{SERVICE} or ({PROJECT_MEMBER} and project_id:%(owner)s)"
)
ADMIN_OR_SERVICE = f"{ADMIN} or {SERVICE}"

PROJECT_SCOPE = ["project"]

_IMAGES = "/v2/images"
_IMAGE = "/v2/images/{image_id}"
_MEMBERS = "/v2/images/{image_id}/members"
_MEMBER = "/v2/images/{image_id}/members/{member_id}"
_NAMESPACES = "/v2/metadefs/namespaces"
_NAMESPACE = "/v2/metadefs/namespaces/{namespace_name}"


def _op(method: str, path: str) -> dict[str, str]:
    return {"method": method, "path": path}


def _api_rule(
    name: str,
    check_str: str,
    description: str,
    *operations: dict[str, str],
    **extra: Any,
) -> policy.DocumentedRuleDefault:
    """A project-scoped rule guarding the listed API operations."""
    return policy.DocumentedRuleDefault(
        name=name,
        check_str=check_str,
        description=description,
        operations=list(operations),
        scope_types=PROJECT_SCOPE,
        **extra,
    )


BASE_RULES: list[policy.RuleDefault] = [
    policy.RuleDefault(
        "default",
        "",
        description="Fallback for rules that an old policy file left empty; "
        "anyone passes unless the operator sets it (for example to "
        '"role:admin").',
    ),
    policy.RuleDefault(
        "context_is_admin",
        "role:admin",
        description="Who counts as a cloud administrator (the request "
        "context's is_admin flag).",
    ),
    policy.RuleDefault(
        "service_api",
        "role:service or role:admin",
        description="Who may call the APIs meant for other OpenStack services "
        "(admin is accepted for services that do not yet send a service token).",
    ),
]

IMAGE_RULES: list[policy.RuleDefault] = [
    _api_rule("add_image", ADMIN_OR_PROJECT_MEMBER_CREATING_OWN,
              "Create an image record.", _op("POST", _IMAGES)),
    _api_rule("delete_image", ADMIN_OR_PROJECT_MEMBER,
              "Delete an image.", _op("DELETE", _IMAGE)),
    _api_rule("get_image", ADMIN_OR_READER_OF_VISIBLE_IMAGE,
              "Show one image.", _op("GET", _IMAGE)),
    _api_rule("get_images", ADMIN_OR_PROJECT_READER,
              "List the images the caller can see.", _op("GET", _IMAGES)),
    _api_rule("modify_image", ADMIN_OR_PROJECT_MEMBER,
              "Change an image's attributes.", _op("PATCH", _IMAGE)),
    _api_rule("publicize_image", ADMIN,
              "Give an image public visibility.", _op("PATCH", _IMAGE)),
    _api_rule("communitize_image", ADMIN_OR_PROJECT_MEMBER,
              "Give an image community visibility.", _op("PATCH", _IMAGE)),
    _api_rule("download_image", ADMIN_OR_MEMBER_OF_VISIBLE_IMAGE,
              "Read an image's data.", _op("GET", f"{_IMAGE}/file")),
    _api_rule("download_from_store", ADMIN_OR_MEMBER_OF_VISIBLE_IMAGE,
              "Read an image's data from a store the caller names.",
              _op("GET", f"{_IMAGE}/file")),
    _api_rule("upload_image", ADMIN_OR_PROJECT_MEMBER,
              "Send an image's data.", _op("PUT", f"{_IMAGE}/file")),
    _api_rule("delete_image_location", ADMIN,
              "Remove a location from an image.", _op("PATCH", _IMAGE)),
    _api_rule("get_image_location", ADMIN_OR_PROJECT_READER,
              "See an image's locations (locations, direct_url).", _op("GET", _IMAGE)),
    _api_rule("set_image_location", ADMIN_OR_PROJECT_MEMBER,
              "Replace or add image locations through PATCH.", _op("PATCH", _IMAGE)),
    _api_rule("add_image_location", SERVICE_OR_PROJECT_MEMBER_CREATING_OWN,
              "Add a location to a queued image (locations API).",
              _op("POST", f"{_IMAGE}/locations")),
    _api_rule("fetch_image_location", SERVICE,
              "List an image's locations (locations API, services only).",
              _op("GET", f"{_IMAGE}/locations")),
    _api_rule("add_member", ADMIN_OR_PROJECT_MEMBER,
              "Share an image with another project.", _op("POST", _MEMBERS)),
    _api_rule("delete_member", ADMIN_OR_PROJECT_MEMBER,
              "Stop sharing an image with a project.", _op("DELETE", _MEMBER)),
    _api_rule("get_member", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER,
              "Show one image membership.", _op("GET", _MEMBER)),
    _api_rule("get_members", ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER,
              "List an image's memberships.", _op("GET", _MEMBERS)),
    _api_rule("modify_member", ADMIN_OR_SHARED_MEMBER,
              "Accept or reject an image shared with the caller's project.",
              _op("PUT", _MEMBER)),
    policy.RuleDefault(
        "manage_image_cache",
        ADMIN,
        description="Manage the API nodes' image cache (legacy umbrella rule).",
        scope_types=PROJECT_SCOPE,
    ),
    _api_rule("deactivate", ADMIN_OR_PROJECT_MEMBER,
              "Deactivate an image.", _op("POST", f"{_IMAGE}/actions/deactivate")),
    _api_rule("reactivate", ADMIN_OR_PROJECT_MEMBER,
              "Reactivate a deactivated image.", _op("POST", f"{_IMAGE}/actions/reactivate")),
    _api_rule("copy_image", ADMIN,
              "Copy an existing image's data into more stores (import "
              "method copy-image).", _op("POST", f"{_IMAGE}/import")),
    _api_rule("list_cached_nodes", ADMIN,
              "List the API nodes that hold an image in their cache.",
              _op("GET", "/v2/cache/nodes/{image_id}")),
]

_TASKS_NOTE = (
    " Also checked internally when other operations (such as image import) "
    "create tasks, so it should not be narrower than the import rules; the "
    "public tasks API is guarded by tasks_api_access."
)

TASK_RULES: list[policy.RuleDefault] = [
    _api_rule("get_task", DEFAULT, "Show one task." + _TASKS_NOTE,
              _op("GET", "/v2/tasks/{task_id}")),
    _api_rule("get_tasks", DEFAULT, "List tasks." + _TASKS_NOTE, _op("GET", "/v2/tasks")),
    _api_rule("add_task", DEFAULT, "Create a task." + _TASKS_NOTE, _op("POST", "/v2/tasks")),
    _api_rule("modify_task", DEFAULT, "Not checked anywhere; kept so policy files "
              "that set it stay valid.", _op("DELETE", "/v2/tasks/{task_id}"),
              deprecated_for_removal=True,
              deprecated_reason="The API never checked this rule.",
              deprecated_since="W"),
    _api_rule("tasks_api_access", ADMIN,
              "Blanket rule for every call of the tasks API; it cannot tell "
              "reads from writes.",
              _op("GET", "/v2/tasks/{task_id}"), _op("GET", "/v2/tasks"),
              _op("POST", "/v2/tasks"), _op("DELETE", "/v2/tasks/{task_id}")),
]

METADEF_RULES: list[policy.RuleDefault] = [
    policy.RuleDefault(
        "metadef_default",
        "",
        description="Building block an operator can point metadef rules at "
        "to open them to everyone.",
    ),
    policy.RuleDefault(
        "metadef_admin",
        ADMIN,
        description="Who may write metadata definitions; every metadef write "
        "rule refers to it.",
    ),
    _api_rule("get_metadef_namespace", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "Show one namespace.", _op("GET", _NAMESPACE)),
    _api_rule("get_metadef_namespaces", ADMIN_OR_PROJECT_READER,
              "List namespaces.", _op("GET", _NAMESPACES)),
    _api_rule("modify_metadef_namespace", METADEF_ADMIN,
              "Update a namespace.", _op("PUT", _NAMESPACE)),
    _api_rule("add_metadef_namespace", METADEF_ADMIN,
              "Create a namespace.", _op("POST", _NAMESPACES)),
    _api_rule("delete_metadef_namespace", METADEF_ADMIN,
              "Delete a namespace and everything in it.", _op("DELETE", _NAMESPACE)),
    _api_rule("get_metadef_object", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "Show one object of a namespace.",
              _op("GET", f"{_NAMESPACE}/objects/{{object_name}}")),
    _api_rule("get_metadef_objects", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "List a namespace's objects.", _op("GET", f"{_NAMESPACE}/objects")),
    _api_rule("modify_metadef_object", METADEF_ADMIN,
              "Update an object.", _op("PUT", f"{_NAMESPACE}/objects/{{object_name}}")),
    _api_rule("add_metadef_object", METADEF_ADMIN,
              "Create an object in a namespace.", _op("POST", f"{_NAMESPACE}/objects")),
    _api_rule("delete_metadef_object", METADEF_ADMIN,
              "Delete an object.", _op("DELETE", f"{_NAMESPACE}/objects/{{object_name}}")),
    _api_rule("list_metadef_resource_types", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "List the known resource types.", _op("GET", "/v2/metadefs/resource_types")),
    _api_rule("get_metadef_resource_type", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "List the resource types a namespace is associated with.",
              _op("GET", f"{_NAMESPACE}/resource_types")),
    _api_rule("add_metadef_resource_type_association", METADEF_ADMIN,
              "Associate a namespace with a resource type.",
              _op("POST", f"{_NAMESPACE}/resource_types")),
    _api_rule("remove_metadef_resource_type_association", METADEF_ADMIN,
              "Remove a namespace's association with a resource type.",
              _op("DELETE", f"{_NAMESPACE}/resource_types/{{name}}")),
    _api_rule("get_metadef_property", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "Show one property of a namespace.",
              _op("GET", f"{_NAMESPACE}/properties/{{property_name}}")),
    _api_rule("get_metadef_properties", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "List a namespace's properties.", _op("GET", f"{_NAMESPACE}/properties")),
    _api_rule("modify_metadef_property", METADEF_ADMIN,
              "Update a property.",
              _op("PUT", f"{_NAMESPACE}/properties/{{property_name}}")),
    _api_rule("add_metadef_property", METADEF_ADMIN,
              "Create a property in a namespace.", _op("POST", f"{_NAMESPACE}/properties")),
    _api_rule("remove_metadef_property", METADEF_ADMIN,
              "Delete a property.",
              _op("DELETE", f"{_NAMESPACE}/properties/{{property_name}}")),
    _api_rule("get_metadef_tag", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "Show one tag of a namespace.", _op("GET", f"{_NAMESPACE}/tags/{{tag_name}}")),
    _api_rule("get_metadef_tags", ADMIN_OR_READER_OF_VISIBLE_NAMESPACE,
              "List a namespace's tags.", _op("GET", f"{_NAMESPACE}/tags")),
    _api_rule("modify_metadef_tag", METADEF_ADMIN,
              "Rename a tag.", _op("PUT", f"{_NAMESPACE}/tags/{{tag_name}}")),
    _api_rule("add_metadef_tag", METADEF_ADMIN,
              "Create one tag.", _op("POST", f"{_NAMESPACE}/tags/{{tag_name}}")),
    _api_rule("add_metadef_tags", METADEF_ADMIN,
              "Create several tags at once.", _op("POST", f"{_NAMESPACE}/tags")),
    _api_rule("delete_metadef_tag", METADEF_ADMIN,
              "Delete one tag.", _op("DELETE", f"{_NAMESPACE}/tags/{{tag_name}}")),
    _api_rule("delete_metadef_tags", METADEF_ADMIN,
              "Delete all of a namespace's tags.", _op("DELETE", f"{_NAMESPACE}/tags")),
]

CACHE_RULES: list[policy.RuleDefault] = [
    _api_rule("cache_image", ADMIN,
              "Queue an image for caching on this node.", _op("PUT", "/v2/cache/{image_id}")),
    _api_rule("cache_list", ADMIN,
              "List cached and queued images.", _op("GET", "/v2/cache")),
    _api_rule("cache_delete", ADMIN,
              "Drop one or all images from the cache and the queue.",
              _op("DELETE", "/v2/cache"), _op("DELETE", "/v2/cache/{image_id}")),
    _api_rule("cache_clean", ADMIN,
              "Remove invalid and stalled cache entries.", _op("POST", "/v2/cache/clean")),
    _api_rule("cache_prune", ADMIN,
              "Shrink the cache below its size limit.", _op("POST", "/v2/cache/prune")),
]

DISCOVERY_RULES: list[policy.RuleDefault] = [
    _api_rule("stores_info_detail", ADMIN_OR_SERVICE,
              "Show the configured stores with their driver details.",
              _op("GET", "/v2/info/stores/detail")),
]


def list_rules() -> list[policy.RuleDefault]:
    """Every rule with its default (entry point ``oslo.policy.policies``)."""
    return [
        *BASE_RULES,
        *IMAGE_RULES,
        *TASK_RULES,
        *METADEF_RULES,
        *CACHE_RULES,
        *DISCOVERY_RULES,
    ]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register ``[oslo_policy]`` on ``conf`` with Glance's defaults.

    Safe to call more than once. Call it before overriding an
    ``[oslo_policy]`` option in code, since the Enforcer reads
    ``policy_file`` when it is built.
    """
    policy_opts.set_defaults(conf)  # registers the group's options
    group = conf.oslo_policy
    conf.set_default("policy_file", DEFAULT_POLICY_FILE, group="oslo_policy")
    # Both are True already in recent oslo.policy (enforce_scope is gone from
    # it entirely); older releases default to False and must not be trusted to.
    for name in ("enforce_new_defaults", "enforce_scope"):
        if name in group:
            conf.set_default(name, True, group="oslo_policy")


# --- targets ---------------------------------------------------------------

# A None identity would be formatted as the text "None" and then match a
# caller whose own project is None; leaving the key out makes the check fail.
_IDENTITY_KEYS = ("project_id", "owner", "member_id", "member")
_NESTED_PROPERTY_KEYS = ("properties", "extra_properties")
_NOT_IN_TARGET = ("locations",)


def _drop_missing_identities(target: dict[str, Any]) -> dict[str, Any]:
    for key in _IDENTITY_KEYS:
        if key in target and target[key] is None:
            del target[key]
    return target


def image_target(
    image: Mapping[str, Any], member_project_id: str | None = None
) -> dict[str, Any]:
    """The target for rules about an existing image (Glance's ImageTarget).

    ``image`` holds the core attributes (``id``, ``owner``, ``visibility``,
    ``status``, ...) and the additional properties, either flat or in a
    ``properties``/``extra_properties`` mapping; core attributes win on a
    clash. ``project_id`` is the owner.

    ``member_project_id`` is the caller's project when the caller holds a
    membership (any status) on the image. As in Glance it becomes ``member_id``
    only for a shared image the caller does not own, which is what lets a
    consumer project read and download it and accept or reject the share.
    """
    target: dict[str, Any] = {}
    for key in _NESTED_PROPERTY_KEYS:
        nested = image.get(key)
        if isinstance(nested, Mapping):
            target.update(nested)
    for key, value in image.items():
        if key in _NESTED_PROPERTY_KEYS or key in _NOT_IN_TARGET:
            continue
        target[key] = value
    if "id" in target or "image_id" in target:
        image_id = target.get("id", target.get("image_id"))
        target["id"] = target["image_id"] = image_id
    target["project_id"] = target.get("owner")
    target.pop("member_id", None)
    target.pop("member", None)
    owner = target.get("owner")
    if (
        member_project_id is not None
        and target.get("visibility") == "shared"
        and member_project_id != owner
    ):
        target["member_id"] = target["member"] = member_project_id
    return _drop_missing_identities(target)


def new_image_target(properties: Mapping[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """The target for add_image: the proposed image, owned by the caller unless set."""
    owner = properties.get("owner", ctx.project_id)
    return _drop_missing_identities({
        "project_id": owner,
        "owner": owner,
        "visibility": properties.get("visibility", "private"),
    })


def metadef_target(
    ctx: RequestContext, namespace: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The target for metadef rules.

    For anything inside a namespace (objects, properties, tags, resource type
    associations) pass that namespace; without one the target is the caller's
    own project, as for listing or creating namespaces.
    """
    if namespace is None:
        return _drop_missing_identities({"project_id": ctx.project_id})
    return _drop_missing_identities({
        "project_id": namespace.get("owner"),
        "visibility": namespace.get("visibility"),
    })


# --- enforcement -------------------------------------------------------------


class Policy:
    """Glance's rules on an oslo.policy Enforcer built from ``conf``.

    ``[oslo_policy] policy_file`` (YAML or JSON) and ``policy_dirs`` override
    the defaults and are re-read when they change on disk; a missing file just
    leaves the defaults in force.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        register_opts(conf)
        self._enforcer = policy.Enforcer(conf, use_conf=True, overwrite=False)
        # Every default changed with secure RBAC; warning about each one on
        # every start only buries the warnings that matter.
        self._enforcer.suppress_default_change_warnings = True
        # register_defaults() deep-copies every rule (about 10 ms a runtime, most
        # of a test's app construction); the copies are made once per process.
        self._enforcer.registered_rules.update(_registered_defaults())
        self._lock = threading.Lock()
        self._files: tuple = ()          # what the loaded rules were read from
        self._file_stats: tuple = ()
        self._next_search = 0.0
        self._decisions: dict[tuple, bool] = {}
        self._cacheable: dict[str, Any] = {}
        self._reload()

    @property
    def enforcer(self) -> policy.Enforcer:
        return self._enforcer

    def enforce(
        self,
        ctx: RequestContext,
        rule: str,
        target: Mapping[str, Any],
        *,
        registered: bool = True,
    ) -> None:
        """Raise :class:`glimpse.errors.Forbidden` unless ``ctx`` may do ``rule``.

        Set ``registered=False`` only for rules added at run time with
        :meth:`add_rules` (property protections).
        """
        if not self.check(ctx, rule, target, registered=registered):
            raise errors.Forbidden(FORBIDDEN_MESSAGE % {"action": rule})

    def check(
        self,
        ctx: RequestContext,
        rule: str,
        target: Mapping[str, Any],
        *,
        registered: bool = True,
    ) -> bool:
        """Whether ``ctx`` may do ``rule`` on ``target``; a wrong token scope is a no."""
        # An unknown name would silently fall back to the "default" rule,
        # which lets everyone through, so a typo must fail loudly instead.
        if registered and rule not in self._enforcer.registered_rules:
            raise policy.PolicyNotRegistered(rule)
        return self._decide(rule, dict(target), ctx)

    def check_is_admin(self, ctx: RequestContext) -> bool:
        """Whether the context_is_admin rule passes for these credentials."""
        return self._decide("context_is_admin", None, ctx)

    # --- speed: oslo.policy searches the config directories for the policy
    # file and inspects every check's signature on each enforce() call, about
    # a millisecond per call. A decision depends only on the rules, the rule
    # name, the target and the credentials, so it is remembered until the
    # rules change; the files are watched with a stat() per check instead.
    # Of the target, only the keys that the rule's checks format into their
    # match strings (``%(project_id)s``) count: a GET of any private image of
    # one project by one caller is then one decision, not one per image.

    MAX_DECISIONS = 20000
    SEARCH_INTERVAL = 1.0  # how often a policy file that is absent is looked for

    def _decide(self, rule: str, target: dict[str, Any] | None, ctx: RequestContext) -> bool:
        """``target`` None means the credentials themselves (context_is_admin)."""
        self._refresh()
        key = None
        used = self._target_keys(rule)
        if used is not False:
            if target is None:
                frozen_target: tuple | None = ()
            elif used is None:
                frozen_target = _freeze(target)
            else:
                frozen_target = _freeze({k: target[k] for k in used if k in target})
            if frozen_target is not None:
                key = (rule, frozen_target, _identity(ctx))
                known = self._decisions.get(key)
                if known is not None:
                    return known
        creds = ctx.to_policy_values()
        allowed = bool(self._enforcer.enforce(rule, dict(creds) if target is None else target,
                                              creds))
        if key is not None:
            if len(self._decisions) >= self.MAX_DECISIONS:
                self._decisions.clear()
            self._decisions[key] = allowed
        return allowed

    def _refresh(self) -> None:
        """Reload the rules when a policy file changed, appeared or was added to."""
        enforcer = self._enforcer
        if not enforcer.use_conf and _stat_all(self._files) == self._file_stats:
            if self._files[0] is not None or time.monotonic() < self._next_search:
                return
            if not _policy_file_found(enforcer) and _policy_files(enforcer) == self._files:
                # Still no file and the same directories: the same rules and decisions.
                self._next_search = time.monotonic() + self.SEARCH_INTERVAL
                return
        with self._lock:
            self._reload()

    def _reload(self) -> None:
        enforcer = self._enforcer
        enforcer.use_conf = True
        enforcer.load_rules()
        enforcer.use_conf = False  # enforce() then skips its own search of the disk
        self._files = _policy_files(enforcer)
        self._file_stats = _stat_all(self._files)
        self._next_search = time.monotonic() + self.SEARCH_INTERVAL
        self._decisions = {}
        self._cacheable = {}

    def _target_keys(self, rule: str) -> tuple[str, ...] | None | bool:
        """False: ``rule``'s decisions are not remembered; None: they depend on the
        whole target; otherwise the target keys they depend on."""
        known = self._cacheable.get(rule, _UNKNOWN)
        if known is _UNKNOWN:
            rules = self._enforcer.rules
            if not _deterministic(rules.get(rule), rules, set()):
                known = False
            else:
                keys: set[str] | None = set()
                known = None if not _formatted_keys(rules.get(rule), rules, set(), keys) \
                    else tuple(sorted(keys))
            self._cacheable[rule] = known
        return known

    def add_rules(self, rules: Mapping[str, str]) -> None:
        """Add rules (name -> check string) that are not Glance defaults.

        Property protections in ``policies`` format turn each protected
        property and operation into such a rule (checked with
        ``registered=False``). An added rule replaces one of the same name.
        """
        with self._lock:
            self._reload()
            parsed = policy.Rules.from_dict(dict(rules))
            self._enforcer.set_rules(parsed, overwrite=False, use_conf=True)
            self._reload()


_DEFAULTS_LOCK = threading.Lock()
_DEFAULTS: dict[str, policy.RuleDefault] = {}


def _registered_defaults() -> dict[str, policy.RuleDefault]:
    """Copies of :func:`list_rules`, made once per process and shared by every Policy.

    oslo.policy copies each default it registers so that nothing it does to an
    enforcer's rules reaches the module's RuleDefault objects; it only reads the
    registered ones (load_rules puts their checks into the enforcer's own Rules),
    so one copy can serve all enforcers."""
    with _DEFAULTS_LOCK:
        if not _DEFAULTS:
            rules = list_rules()
            names = [rule.name for rule in rules]
            if len(set(names)) != len(names):
                raise policy.DuplicatePolicyError(
                    next(n for n in names if names.count(n) > 1))
            _DEFAULTS.update((rule.name, copy.deepcopy(rule)) for rule in rules)
        return _DEFAULTS


# Checks whose answer depends only on the target and the credentials.
_PURE_CHECKS = (_checks.AndCheck, _checks.OrCheck, _checks.NotCheck, _checks.RuleCheck,
                _checks.RoleCheck, _checks.GenericCheck, _checks.TrueCheck, _checks.FalseCheck)


def _deterministic(check: Any, rules: Mapping[str, Any], seen: set[str]) -> bool:
    if check is None:
        return True  # an unknown rule is refused the same way every time
    if type(check) not in _PURE_CHECKS:
        return False  # http(s): checks and third-party checks ask elsewhere
    if isinstance(check, _checks.RuleCheck):
        if check.match in seen:
            return True
        seen.add(check.match)
        return _deterministic(rules.get(check.match), rules, seen)
    children = getattr(check, "rules", None)
    if children is None and isinstance(check, _checks.NotCheck):
        children = [check.rule]
    return all(_deterministic(c, rules, seen) for c in children or ())


_UNKNOWN = object()
_TARGET_KEY = re.compile(r"%\(([^)]*)\)s")


def _formatted_keys(check: Any, rules: Mapping[str, Any], seen: set[str],
                    keys: set[str]) -> bool:
    """Add to ``keys`` the target keys a deterministic check formats into its
    match strings (GenericCheck and RoleCheck format ``match % target``); False
    when a match string formats the target in any other way (then all of it counts)."""
    if check is None:
        return True
    if isinstance(check, _checks.RuleCheck):
        if check.match in seen:
            return True
        seen.add(check.match)
        return _formatted_keys(rules.get(check.match), rules, seen, keys)
    if isinstance(check, (_checks.GenericCheck, _checks.RoleCheck)):
        match = check.match
        keys.update(_TARGET_KEY.findall(match))
        return "%" not in _TARGET_KEY.sub("", match)
    children = getattr(check, "rules", None)
    if children is None and isinstance(check, _checks.NotCheck):
        children = [check.rule]
    return all(_formatted_keys(c, rules, seen, keys) for c in children or ())


def _policy_file_found(enforcer: policy.Enforcer) -> bool:
    try:
        enforcer._get_policy_path(enforcer.policy_file)
    except cfg.ConfigFilesNotFoundError:
        return False
    return True


def _identity(ctx: RequestContext) -> tuple:
    """Everything of a context that its policy values are made from."""
    return (ctx.user_id, ctx.project_id, ctx.roles, ctx.service_roles, ctx.is_admin,
            ctx.user_domain_id, ctx.project_domain_id, ctx.domain_id, ctx.system_scope,
            ctx.service_user_id, ctx.service_project_id)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _freeze(values: Mapping[str, Any]) -> tuple | None:
    """A hashable copy of a target or credentials (scalars and lists of scalars),
    or None when it holds anything else. Key order counts: an equal dict built
    in another order only misses the cache."""
    out = []
    for name, value in values.items():
        kind = value.__class__
        if kind in _SCALARS:
            out.append((name, value))
        elif kind is list or kind is tuple:
            if not all(item.__class__ in _SCALARS for item in value):
                return None
            out.append((name, kind, tuple(value)))
        else:
            return None
    return tuple(out)


def _policy_files(enforcer: policy.Enforcer) -> tuple:
    """The policy file (or None when none was found) and every file of policy dirs."""
    paths: list[str] = []
    for d in enforcer.conf.oslo_policy.policy_dirs:
        try:
            found = enforcer._get_policy_path(d)
        except cfg.ConfigFilesNotFoundError:
            continue
        paths.append(found)
        try:
            paths.extend(os.path.join(found, n) for n in sorted(os.listdir(found)))
        except OSError:
            pass
    return (enforcer.policy_path, *paths)


def _stat_all(files: tuple) -> tuple:
    out = []
    for path in files:
        if path is None:
            out.append(None)
            continue
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            out.append(False)
    return tuple(out)
