"""What must change in Asterisk so that it holds exactly what the database says.

Asterisk hands fields back in its own spelling (``yes`` as ``true``, codec lists as
``(alaw|ulaw)``, ``3.000000`` for ``3.0``, every default filled in), so only the fields centrex
sets are compared, each after normalising both sides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from centrex.asterisk.pjsip_objects import PJSIP_OBJECT_TYPES, PjsipObject

ObjectKey = tuple[str, str]  # (type, id)

_TRUE = {"yes", "true", "on", "1", "y", "t"}
_FALSE = {"no", "false", "off", "0", "n", "f"}
_LIST_SPLIT = re.compile(r"[,|()\s]+")


def normalise(attribute: str, value: str) -> str | frozenset[str]:
    v = value.strip()
    low = v.lower()
    if low in _TRUE:
        return "yes"
    if low in _FALSE:
        return "no"
    if attribute in {"allow", "disallow", "aors", "auth", "outbound_auth"}:
        return frozenset(t for t in _LIST_SPLIT.split(low) if t)
    if attribute == "match":  # Asterisk writes "127.0.0.1/255.255.255.255" for "127.0.0.1"
        return frozenset(part.split("/")[0] for part in re.split(r"[,\s]+", low) if part)
    try:  # Asterisk writes a decimal field with six decimals: "3.000000" for "3.0"
        return format(float(v), "g")
    except ValueError:
        return v


def same_fields(desired: Mapping[str, str], actual: Mapping[str, str]) -> bool:
    for attribute, value in desired.items():
        if attribute == "disallow":
            continue  # a write-only directive: Asterisk keeps the resulting "allow" list only
        if attribute not in actual:
            return False
        if normalise(attribute, value) != normalise(attribute, actual[attribute]):
            return False
    return True


@dataclass
class SyncPlan:
    put: list[PjsipObject] = field(default_factory=list)
    delete: list[ObjectKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.put and not self.delete


def plan_sync(
    desired: Iterable[PjsipObject], actual: Mapping[ObjectKey, Mapping[str, str]]
) -> SyncPlan:
    """Objects to (re)write, in create order, and keys to delete, in delete order."""
    plan = SyncPlan()
    wanted: set[ObjectKey] = set()
    for obj in desired:
        wanted.add(obj.key)
        current = actual.get(obj.key)
        if current is None or not same_fields(obj.fields, current):
            plan.put.append(obj)
    order = {t: i for i, t in enumerate(PJSIP_OBJECT_TYPES)}
    plan.put.sort(key=lambda o: order.get(o.type, len(order)))
    extra = [key for key in actual if key not in wanted]
    plan.delete = sorted(extra, key=lambda k: -order.get(k[0], -1))
    return plan
