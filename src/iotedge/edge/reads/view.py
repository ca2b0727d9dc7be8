"""What one caller may see: the objects, clients and metrics in its scope, narrowed by tag filters."""

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Protocol

from iotedge.edge.context import EdgeContext
from iotedge.edge.store import ObjectRow, Scope
from iotedge.edge.store.aio import AsyncEdgeStore
from iotedge.specs import DEVICE_TYPES

__all__ = ["TagFilter", "View", "view_of"]


class TagFilter(Protocol):
    """A filter on one tag (client, object, metric or type); Grafana's ad-hoc filters are some."""

    @property
    def key(self) -> str:
        """The tag it filters."""
        ...

    def matches(self, value: str) -> bool:
        """Whether a tag value passes."""
        ...


class View:
    """The reads of one request: one scope, one set of tag filters, objects read once.

    Build it with :func:`view_of`, which reads the visible objects before the view is used
    (the store is asynchronous; the view's own helpers then only touch memory).

    Args:
        store: the edge's store.
        scope: the clients the caller may see (None = all).
        objects: every object visible in ``scope``, by id.
        clock: seconds since the epoch, for ages.
        is_stale: whether data last seen at a time is stale.
        filters: tag filters every read honours.
    """

    def __init__(
        self,
        store: AsyncEdgeStore,
        scope: Scope,
        objects: list[ObjectRow],
        *,
        clock: Callable[[], float],
        is_stale: Callable[[float | None], bool],
        filters: Sequence[TagFilter] = (),
    ) -> None:
        self.store = store
        self.scope = scope
        self.objects = objects
        self.clock = clock
        self.is_stale = is_stale
        self.filters = list(filters)

    def keep(self, **tags: str) -> bool:
        """Whether tags pass every filter on those keys (other filters do not apply)."""
        return all(f.matches(tags[f.key]) for f in self.filters if f.key in tags)

    @cached_property
    def by_id(self) -> dict[str, ObjectRow]:
        """Visible objects by id."""
        return {obj.id: obj for obj in self.objects}

    @cached_property
    def clients(self) -> list[str]:
        """Visible clients that have objects."""
        return sorted({obj.client for obj in self.objects})

    def select_objects(
        self, object_ids: Sequence[str] | None = None, client_ids: Sequence[str] | None = None
    ) -> list[ObjectRow]:
        """Visible objects among ``object_ids`` and of ``client_ids`` (None = any) passing the filters."""
        wanted_ids = None if object_ids is None else set(object_ids)
        wanted_clients = None if client_ids is None else set(client_ids)
        return [
            obj
            for obj in self.objects
            if (wanted_ids is None or obj.id in wanted_ids)
            and (wanted_clients is None or obj.client in wanted_clients)
            and self.keep(client=obj.client, object=obj.id, type=obj.type)
        ]

    def metrics_of(self, obj: ObjectRow, metrics: Sequence[str] | None) -> list[str]:
        """The object's metrics among ``metrics`` (None = all) that pass the filters."""
        return [
            m
            for m in DEVICE_TYPES[obj.type].metrics
            if (metrics is None or m in metrics) and self.keep(metric=m)
        ]


async def view_of(ctx: EdgeContext, scope: Scope, filters: Sequence[TagFilter] = ()) -> View:
    """The view of a caller with ``scope`` on this edge's store (its objects read once)."""
    objects = await ctx.store.objects(scope)
    return View(ctx.store, scope, objects, clock=ctx.clock, is_stale=ctx.is_stale, filters=filters)
