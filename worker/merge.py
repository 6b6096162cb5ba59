"""Three-way, field-level merge of one record, and the conflict policies.

``base`` is the last version both sides agreed on, ``local`` and ``remote`` are what each
side holds now. A field changed on one side only takes that side's value; a field changed
on both sides to different values is a conflict. Deleting a record on one side while the
other side edits it is a conflict too (``deleted_at`` plus the edited fields), because
merging would silently drop the edit.

``updated_at`` is never a conflict: every edit touches it, so the later of the two wins.
When both sides deleted the record, that is agreement, whatever else differs.

Policies settle conflicts: ``remote`` takes the server's values, ``local`` keeps this
device's, ``manual`` leaves the decision to the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from craftsync.contract.vocabulary import Policy, values

#: The policies, as spelled on the wire.
POLICIES: Final = values(Policy)


@dataclass(frozen=True)
class Merge:
    """The outcome of merging one record."""

    #: The merged record; under ``manual`` with conflicts, the local record unchanged.
    record: dict[str, Any]
    #: Fields changed differently on both sides (empty when the merge was clean).
    conflicts: list[str] = field(default_factory=list)


def changed(base: dict[str, Any] | None, side: dict[str, Any], fields: tuple[str, ...]) -> set[str]:
    """The fields ``side`` changed since ``base`` (all of them when there is no base)."""
    if base is None:
        return {name for name in fields if side.get(name) is not None}
    return {name for name in fields if side.get(name) != base.get(name)}


def merge(
    base: dict[str, Any] | None,
    local: dict[str, Any],
    remote: dict[str, Any],
    fields: tuple[str, ...],
    policy: Policy,
) -> Merge:
    """Merge ``local`` and ``remote`` against ``base`` over ``fields``."""
    ours = changed(base, local, fields) - {"updated_at"}
    theirs = changed(base, remote, fields) - {"updated_at"}
    both_deleted = local.get("deleted_at") is not None and remote.get("deleted_at") is not None
    clashes = {name for name in ours & theirs if local.get(name) != remote.get(name)}
    if both_deleted:  # gone on both sides: what else differs no longer matters
        clashes.clear()
    conflicts = sorted(clashes | _edit_versus_delete(base, local, remote, ours, theirs))
    merged = {name: remote.get(name) for name in fields}
    if "updated_at" in fields:
        merged["updated_at"] = max(local.get("updated_at") or "", remote.get("updated_at") or "") or None
    for name in ours:
        if name not in conflicts or policy == Policy.LOCAL:
            merged[name] = local.get(name)
    if conflicts and policy == Policy.MANUAL:
        return Merge(record=dict(local), conflicts=conflicts)
    if conflicts and "deleted_at" in conflicts:
        merged = dict(local if policy == Policy.LOCAL else remote)  # a delete is all or nothing
    return Merge(record=merged, conflicts=conflicts)


def _edit_versus_delete(
    base: dict[str, Any] | None, local: dict[str, Any], remote: dict[str, Any], ours: set[str], theirs: set[str]
) -> set[str]:
    def deleted(side: dict[str, Any]) -> bool:
        return side.get("deleted_at") is not None and (base is None or base.get("deleted_at") is None)

    if deleted(local) and not deleted(remote) and theirs - {"deleted_at"}:
        return {"deleted_at", *(theirs - {"deleted_at"})}
    if deleted(remote) and not deleted(local) and ours - {"deleted_at"}:
        return {"deleted_at", *(ours - {"deleted_at"})}
    return set()
