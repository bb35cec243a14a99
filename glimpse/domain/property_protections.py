"""Property protections: who may create, read, update and delete which additional properties.

The rules come from the file named by ``[DEFAULT] property_protection_file``
(Glance's format, so an operator's existing file keeps working). It is an INI
file; each section name is a regular expression searched for in a property
name, and each section has the four keys ``create``, ``read``, ``update`` and
``delete``. Sections are tried in file order and the first one that matches
decides. A property that no section matches may not be touched by anyone, which
is why files usually end with a ``[.*]`` catch-all.

With ``property_protection_rule_format = roles`` a value is a comma-separated
list of role names (``@``: everyone, ``!``: no one). With ``= policies`` a value
is the name of one policy rule (from the policy file), or ``@`` / ``!``.

Only additional properties are protected; core attributes never are. An
administrator gets no special treatment: the roles listed decide.

This module is pure: it parses text and decides. Reading the file and wiring
policy checks happen in :mod:`glimpse.services.runtime`.
"""

from __future__ import annotations

import configparser
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from glimpse.context import RequestContext
from glimpse.errors import Forbidden

LOG = logging.getLogger(__name__)

OPERATIONS = ("create", "read", "update", "delete")
RULE_FORMATS = ("roles", "policies")
EVERYONE = "@"
NOBODY = "!"

# Names Glance would have to look up again and again in a list response; the
# cache is bounded because property names come from clients.
_SECTION_CACHE_SIZE = 4096

PolicyCheck = Callable[[RequestContext, str], bool]
"""``(ctx, rule_name) -> allowed``: evaluates a rule added with :meth:`policy_rules`."""

V = TypeVar("V")


class InvalidPropertyProtections(ValueError):
    """The property protection file cannot be used; the service must not start."""


@dataclass(frozen=True)
class Permission:
    """Who may do one operation on the properties of one section."""

    everyone: bool = False
    roles: frozenset[str] = frozenset()
    policy_rule: str | None = None  # name of the rule added to the policy enforcer


NOBODY_PERMISSION = Permission()
EVERYONE_PERMISSION = Permission(everyone=True)


@dataclass(frozen=True)
class Section:
    pattern: str
    regex: re.Pattern[str]
    permissions: Mapping[str, Permission]
    policy_names: Mapping[str, str]  # operation -> referenced policy rule (policies format)


def policy_rule_name(pattern: str, operation: str) -> str:
    """The name under which a section's operation is registered (Glance's naming)."""
    return f"{pattern}:{operation}"


# ---------------------------------------------------------------- parsing


def parse(text: str, rule_format: str, source: str = "<property protections>") -> list[Section]:
    """Parse a property protection file's text; raise InvalidPropertyProtections if unusable."""
    if rule_format not in RULE_FORMATS:
        raise _invalid(source, f"property_protection_rule_format must be 'roles' or "
                               f"'policies', not {rule_format!r}")
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise _invalid(source, str(exc)) from exc
    sections = []
    for pattern in parser.sections():
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise _invalid(source, f"section [{pattern}] is not a valid regular expression: "
                                   f"{exc}") from exc
        try:
            values = dict(parser.items(pattern))
        except configparser.Error as exc:
            raise _invalid(source, f"section [{pattern}]: {exc}") from exc
        unknown = sorted(set(values) - set(OPERATIONS))
        if unknown:
            raise _invalid(source, f"section [{pattern}] has unknown operation(s) "
                                   f"{', '.join(unknown)}; allowed: {', '.join(OPERATIONS)}")
        missing = [op for op in OPERATIONS if op not in values]
        if missing:
            raise _invalid(source, f"section [{pattern}] does not say who may "
                                   f"{', '.join(missing)}; each section needs all of "
                                   f"{', '.join(OPERATIONS)}")
        permissions: dict[str, Permission] = {}
        policy_names: dict[str, str] = {}
        for op in OPERATIONS:
            value = values[op].strip()
            if not value:
                LOG.warning("Property protection [%s] %s is empty in %s: no one may %s "
                            "matching properties", pattern, op, source, op)
                permissions[op] = NOBODY_PERMISSION
            elif rule_format == "roles":
                permissions[op] = _roles_permission(source, pattern, op, value)
            else:
                permissions[op] = _policy_permission(source, pattern, op, value)
                if permissions[op].policy_rule is not None:
                    policy_names[op] = value
        sections.append(Section(pattern, regex, permissions, policy_names))
    return sections


def _roles_permission(source: str, pattern: str, op: str, value: str) -> Permission:
    roles = {r.strip().lower() for r in value.split(",")} - {""}
    special = roles & {EVERYONE, NOBODY}
    if special and len(roles) > 1:
        raise _invalid(source, f"[{pattern}] {op} = {value}: '@' (everyone) and '!' (no one) "
                               "cannot be combined with each other or with role names")
    if EVERYONE in roles:
        return EVERYONE_PERMISSION
    if NOBODY in roles or not roles:
        return NOBODY_PERMISSION
    return Permission(roles=frozenset(roles))


def _policy_permission(source: str, pattern: str, op: str, value: str) -> Permission:
    if "," in value:
        raise _invalid(source, f"[{pattern}] {op} = {value}: only one policy rule is allowed "
                               "per operation; combine rules in the policy file instead")
    if value == EVERYONE:
        return EVERYONE_PERMISSION
    if value == NOBODY:
        return NOBODY_PERMISSION
    return Permission(policy_rule=policy_rule_name(pattern, op))


def _invalid(source: str, detail: str) -> InvalidPropertyProtections:
    return InvalidPropertyProtections(f"Invalid property protection file {source}: {detail}")


# ---------------------------------------------------------------- deciding


class PropertyProtections:
    """The parsed rules, answering one question per call.

    Without sections (no file configured, or an empty file, as in Glance) every
    method returns at once: ``check`` passes and ``filter_readable`` returns the
    mapping it was given.
    """

    def __init__(self, sections: Iterable[Section] = (), rule_format: str = "roles",
                 policy_check: PolicyCheck | None = None):
        self.sections = tuple(sections)
        self.rule_format = rule_format
        self.enabled = bool(self.sections)
        if self.enabled and rule_format == "policies" and policy_check is None:
            raise ValueError("policies-format property protections need a policy_check")
        self._policy_check = policy_check
        self._section_of: dict[str, Section | None] = {}

    def policy_rules(self) -> dict[str, str]:
        """Rules to add to the policy enforcer: ``"<section>:<op>" -> "rule:<name>"``."""
        return {
            policy_rule_name(s.pattern, op): f"rule:{name}"
            for s in self.sections for op, name in s.policy_names.items()
        }

    def referenced_policies(self) -> set[str]:
        return {name for s in self.sections for name in s.policy_names.values()}

    def section_for(self, name: str) -> Section | None:
        """The first section whose expression is found in ``name`` (None: no section)."""
        try:
            return self._section_of[name]
        except KeyError:
            pass
        found = next((s for s in self.sections if s.regex.search(name)), None)
        if len(self._section_of) >= _SECTION_CACHE_SIZE:
            self._section_of.clear()
        self._section_of[name] = found
        return found

    def allows(self, ctx: RequestContext, operation: str, name: str) -> bool:
        if not self.enabled:
            return True
        return self._allows(ctx, _roles_of(ctx), operation, name)

    def _allows(self, ctx: RequestContext, roles: frozenset[str], operation: str,
                name: str) -> bool:
        section = self.section_for(name)
        if section is None:
            return False
        permission = section.permissions.get(operation)
        if permission is None:  # not an operation at all
            return False
        if permission.everyone:
            return True
        if permission.policy_rule is not None:
            assert self._policy_check is not None
            return self._policy_check(ctx, permission.policy_rule)
        return not permission.roles.isdisjoint(roles)

    def check(self, ctx: RequestContext, operation: str, name: str) -> None:
        """Raise Forbidden (403, Glance's wording) unless ``ctx`` may do ``operation``."""
        if self.enabled and not self.allows(ctx, operation, name):
            raise Forbidden(f"Attribute '{name}' is reserved.")

    def check_create(self, ctx: RequestContext, names: Iterable[str]) -> None:
        """A new image's additional properties: each needs create permission."""
        if not self.enabled:
            return
        roles = _roles_of(ctx)
        for name in names:
            if not self._allows(ctx, roles, "create", name):
                raise Forbidden(f"Attribute '{name}' is reserved.")

    def check_patch(self, ctx: RequestContext, op: str, name: str, existed: bool) -> None:
        """One JSON-patch operation on an additional property.

        ``existed``: the property was present (and readable by the caller)
        before this operation. remove needs delete; add or replace of a present
        property needs update; add of a new one needs create.
        """
        if not self.enabled:
            return
        if op == "remove":
            operation = "delete"
        else:
            operation = "update" if existed else "create"
        self.check(ctx, operation, name)

    def filter_readable(self, ctx: RequestContext, props: Mapping[str, V]) -> Mapping[str, V]:
        """The properties ``ctx`` may read (the very same mapping when nothing is protected)."""
        if not self.enabled or not props:
            return props
        return self.read_filter(ctx)(props)

    def unreadable(self, ctx: RequestContext, props: Mapping[str, V]) -> dict[str, V]:
        """The properties ``ctx`` may not read (kept aside, untouched, during an update)."""
        if not self.enabled or not props:
            return {}
        readable = self.read_filter(ctx)(props)
        return {k: v for k, v in props.items() if k not in readable}

    def read_filter(self, ctx: RequestContext) -> Callable[[Mapping[str, V]], Mapping[str, V]]:
        """A filter for many records of one caller, deciding each property name once."""
        if not self.enabled:
            return _identity
        roles = _roles_of(ctx)
        decided: dict[str, bool] = {}

        def readable(props: Mapping[str, V]) -> Mapping[str, V]:
            kept = {}
            for key, value in props.items():
                allowed = decided.get(key)
                if allowed is None:
                    allowed = decided[key] = self._allows(ctx, roles, "read", key)
                if allowed:
                    kept[key] = value
            return kept

        return readable


def _identity(props: Mapping[str, V]) -> Mapping[str, V]:
    return props


def _roles_of(ctx: RequestContext) -> frozenset[str]:
    # Glance counts service roles (from a service token) as well.
    return frozenset(r.lower() for r in (*ctx.roles, *ctx.service_roles))


DISABLED = PropertyProtections()
"""No property protection file: nothing is protected."""


def from_text(text: str, rule_format: str, policy_check: PolicyCheck | None = None,
              source: str = "<property protections>") -> PropertyProtections:
    return PropertyProtections(parse(text, rule_format, source), rule_format, policy_check)
