"""Pull: the server's change feed into the local store, page by page, from the stored cursor.

Each page is applied, together with the new cursor, in one local transaction: a crash
anywhere leaves either the whole page and its cursor, or neither, and the next run resumes
from there. A pulled record is written as it came (spec §6.11).
"""

from __future__ import annotations

import gc
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from craftsync.contract.vocabulary import EventType
from craftsync.worker.reconcile import apply_page
from craftsync.worker.remote import Page
from craftsync.worker.run import Run

#: Pages at least this big are freed at once after they are written (see ``pull``).
GC_PAGE_RECORDS: Final = 1000


def pull(run: Run) -> None:
    """Pull every change of the run's entity the device has not seen yet."""
    store, entity = run.store, run.entity

    def fetch(cursor: str, count: bool = False) -> Page:
        return run.remote.pull(entity, since=cursor, limit=run.options.page_size, count=count)

    # The next page is fetched while this one is written: the network and the server's
    # work overlap the local writes. Only a written page moves the stored cursor.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"pull-{entity}") as prefetch:
        coming = prefetch.submit(fetch, store.cursor(entity), True)
        first = True
        while True:
            page = coming.result()
            if first:
                run.result.total += page.remaining or len(page.records)
                first = False
            if page.has_more:
                coming = prefetch.submit(fetch, page.next_cursor)
            with store.engine_writes():
                run.result.pulled += apply_page(run, page.records)
                store.set_cursor(entity, page.next_cursor)
            run.result.done += len(page.records)
            # httpx keeps each response in a reference cycle: free a big page now, not at
            # the next full collection, so memory stays flat however many pages come.
            if len(page.records) >= GC_PAGE_RECORDS:
                del page.records[:]
                gc.collect()
            run.emit(EventType.PROGRESS)
            if not page.has_more:
                return
