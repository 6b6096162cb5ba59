"""A demo central database: realistic customers, quotes and orders of a small craft business.

``craftsync run`` starts the reference server with ``--demo`` when no remote API is
configured, so that a first launch has something to sync. The data is the same on every
machine (a fixed random seed) and is written only into an empty database.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Engine, func, select

from craftsync.server import repository
from craftsync.server.catalog import Catalog

#: How many of each the demo holds.
CUSTOMERS: Final = 40
QUOTES: Final = 60
ORDERS: Final = 30

_FIRST = ["Ada", "Ben", "Chloe", "Dario", "Elin", "Farah", "Gus", "Hana", "Ivo", "Jade", "Kofi", "Lena", "Milo", "Nora"]
_LAST = ["Baker", "Cole", "Dumont", "Eriksen", "Fischer", "Garcia", "Huang", "Ito", "Jensen", "Kowalski", "Larsen"]
_COMPANIES = ["Oak & Iron Studio", "Willow Weavers", "Northside Pottery", "Copper Kettle Café", "Bright Loom",
              "Harbor Joinery", None, None, "Fern Street Gallery", "Little Anvil", None, "Maple Craft Co."]
_CITIES = [("Portland", "OR", "97201"), ("Asheville", "NC", "28801"), ("Santa Fe", "NM", "87501"),
           ("Burlington", "VT", "05401"), ("Madison", "WI", "53703"), ("Boulder", "CO", "80302")]
_STREETS = ["Elm St", "Market St", "Cedar Ave", "River Rd", "Hillcrest Dr", "Mill Ln"]
_PROJECTS = ["Walnut dining table", "Hand-thrown dinner set", "Custom shelving", "Stained-glass panel",
             "Wool throw blankets", "Cedar garden bench", "Copper light fittings", "Oak bookcase",
             "Ceramic tile mural", "Leather-bound guest book"]
_QUOTE_STATUS = ["draft", "sent", "sent", "accepted", "accepted", "declined", "expired"]
_ORDER_STATUS = ["confirmed", "in_progress", "in_progress", "ready", "delivered", "delivered"]
_PAYMENT = ["unpaid", "deposit_paid", "paid", "paid"]


def _id(rng: random.Random, when: datetime) -> str:
    return f"{int(when.timestamp() * 1000):012x}{rng.getrandbits(80):020x}"


def _time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def records(now: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """The demo records, with times in the few months before ``now``."""
    rng = random.Random(2026)
    now = now or datetime.now(UTC)
    out: dict[str, list[dict[str, Any]]] = {"customers": [], "quotes": [], "orders": []}
    for n in range(CUSTOMERS):
        when = now - timedelta(days=rng.randint(30, 200), minutes=n)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, state, zip_code = rng.choice(_CITIES)
        out["customers"].append({
            "id": _id(rng, when), "name": f"{first} {last}", "company": rng.choice(_COMPANIES),
            "email": f"{first.lower()}.{last.lower()}{n}@example.com", "phone": f"555-01{n:02d}",
            "address": f"{rng.randint(10, 999)} {rng.choice(_STREETS)}", "city": city, "state": state,
            "zip": zip_code, "country": "US", "notes": None, "created_at": _time(when), "updated_at": _time(when),
        })
    for n in range(QUOTES):
        owner = rng.choice(out["customers"])
        when = now - timedelta(days=rng.randint(1, 29), minutes=n)
        out["quotes"].append({
            "id": _id(rng, when), "customer_id": owner["id"], "project_name": rng.choice(_PROJECTS),
            "status": rng.choice(_QUOTE_STATUS), "total_amount": f"{rng.randint(80, 9000)}.{rng.choice(['00', '50', '95'])}",
            "discount_percent": rng.choice(["0.000", "5.000", "10.000"]), "tax_percent": "8.250",
            "valid_until": (when.date() + timedelta(days=30)).isoformat(), "created_by": "demo",
            "created_at": _time(when), "updated_at": _time(when),
        })
    accepted = [q for q in out["quotes"] if q["status"] == "accepted"]
    for n in range(min(ORDERS, len(accepted))):
        quote = accepted[n]
        when = datetime.fromisoformat(quote["created_at"].replace("Z", "+00:00")) + timedelta(days=2)
        out["orders"].append({
            "id": _id(rng, when), "quote_id": quote["id"], "customer_id": quote["customer_id"],
            "status": rng.choice(_ORDER_STATUS), "order_date": when.date().isoformat(),
            "delivery_date": (when.date() + timedelta(days=rng.randint(7, 45))).isoformat(),
            "total_amount": quote["total_amount"], "payment_status": rng.choice(_PAYMENT),
            "created_at": _time(when), "updated_at": _time(when),
        })
    return out


def seed(engine: Engine, catalog: Catalog | None = None) -> bool:
    """Fill an empty central database with the demo records; returns whether it did."""
    catalog = catalog or Catalog.load(engine)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(catalog["customers"].rows)).scalar_one():
            return False
    for entity, batch in records().items():
        results = repository.push(engine, catalog, entity, batch)
        bad = [r for r in results if r["status"] not in ("created", "unchanged")]
        if bad:
            raise RuntimeError(f"demo {entity} refused: {bad[0]}")
    return True



