"""Braze for the stream: `POST /users/track`, as Braze's Segment integration maps calls.

    identify   -> an attributes object: traits as attributes, Segment's reserved traits under Braze's
                  names (firstName -> first_name, lastName -> last_name, birthday -> dob, phone, email,
                  gender, avatar -> image_url, address.city -> home_city, address.country -> country)
    track      -> an events object (name, time, properties); `Order Completed` -> one purchases object
                  per product (product_id, currency, price, quantity, time; the product's other fields
                  as properties), as the integration logs purchases instead of the event
page, screen, group and alias are not sent (counted as unsupported). The user is `external_id` (the
userId), else a `user_alias` {alias_name: anonymousId, alias_label: "anonymous_id"}.

A request holds at most 75 objects in each array (Braze's limit): a batch is cut into requests that keep
to it. A 201 with `errors[]` refuses just the events whose objects are listed, with Braze's message; a 400
refuses every event of that request with its message; 404/405 hold the route (a wrong base_url); 401 is
the shared client's fatal. Braze's /users/track has no idempotency key: an event resent after a crash
(at most the batches in flight) is counted twice there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import SecretStr

from revetl.destinations.base import DestinationConfig, HttpOptions
from revetl.routes.destinations.base import StreamDestination, Verdict

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["BrazeStream", "BrazeStreamConfig", "braze_objects"]

ARRAYS = ("attributes", "events", "purchases")
MAX_OBJECTS = 75
_RESERVED = {"firstName": "first_name", "first_name": "first_name", "lastName": "last_name",
             "last_name": "last_name", "birthday": "dob", "email": "email", "phone": "phone", "gender": "gender",
             "avatar": "image_url"}
_PURCHASE = "Order Completed"


class BrazeStreamConfig(DestinationConfig):
    api_key: SecretStr


def _user(message: dict[str, Any]) -> dict[str, Any] | None:
    if message.get("userId"):
        return {"external_id": message["userId"]}
    if message.get("anonymousId"):
        return {"user_alias": {"alias_name": message["anonymousId"], "alias_label": "anonymous_id"}}
    return None


def _attributes(traits: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in traits.items():
        if key == "address" and isinstance(value, dict):
            found.update({name: value[part] for part, name in (("city", "home_city"), ("country", "country"))
                          if value.get(part) is not None})
        elif key == "birthday" and isinstance(value, str):
            found["dob"] = value[:10]
        else:
            found[_RESERVED.get(key, key)] = value
    return found


def braze_objects(message: dict[str, Any]) -> dict[str, list[dict[str, Any]]] | None:
    """The /users/track objects for one Segment message, by array; None when Braze takes no such call."""
    user = _user(message)
    kind = message.get("type")
    if user is None or kind not in ("identify", "track"):
        return None
    if kind == "identify":
        return {"attributes": [{**user, **_attributes(message.get("traits") or {})}]}
    properties = message.get("properties") or {}
    time = message.get("timestamp")
    products = properties.get("products")
    if message.get("event") == _PURCHASE and isinstance(products, list) and products:
        currency = properties.get("currency") or "USD"
        purchases = []
        for product in products:
            if not isinstance(product, dict):
                continue
            rest = {k: v for k, v in product.items() if k not in ("product_id", "id", "sku", "price", "quantity")}
            purchases.append({**user, "product_id": str(product.get("product_id") or product.get("id")
                                                            or product.get("sku") or ""),
                              "currency": currency, "price": product.get("price"),
                              "quantity": product.get("quantity", 1), "time": time, "properties": rest})
        return {"purchases": purchases}
    return {"events": [{**user, "name": message.get("event"), "time": time, "properties": properties}]}


class BrazeStream(StreamDestination[BrazeStreamConfig]):
    type = "braze"
    max_batch_events = MAX_OBJECTS
    max_batch_bytes = 3_500_000  # under Braze's 4 MB
    default_concurrency = 16
    published_rate_limit = (3000, 3.0)

    def http_options(self) -> HttpOptions:
        key = self.config.api_key.get_secret_value()
        return HttpOptions(headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})

    def prepare(self, message: dict[str, Any]) -> dict[str, Any] | None:
        return braze_objects(message)

    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        verdicts: list[Verdict] = [None] * len(items)
        for request in _requests(items):
            body = {name: [obj for _, obj in request[name]] for name in ARRAYS if request[name]}
            response = await http.request("POST", "/users/track", content=orjson.dumps(body))
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            status = response.status_code
            message = answer.get("message") if isinstance(answer, dict) else None
            if status in (404, 405):
                raise self.fatal(f"braze answered {status}: is base_url right? ({message})", status)
            owners = {index for name in ARRAYS for index, _ in request[name]}
            if status >= 400:
                for index in owners:
                    verdicts[index] = f"braze {status}: {message or response.text[:200]}"
                continue
            for error in answer.get("errors") or ():
                array, position = error.get("input_array"), error.get("index")
                if array in request and isinstance(position, int) and position < len(request[array]):
                    verdicts[request[array][position][0]] = f"braze: {error.get('type')}"
        return verdicts


def _requests(items: Sequence[dict[str, Any]]) -> list[dict[str, list[tuple[int, dict[str, Any]]]]]:
    """Items cut into requests of at most 75 objects per array; each object with the item it came from."""
    requests: list[dict[str, list[tuple[int, dict[str, Any]]]]] = []
    current: dict[str, list[tuple[int, dict[str, Any]]]] = {name: [] for name in ARRAYS}
    for index, item in enumerate(items):
        if any(len(current[name]) + len(item.get(name, ())) > MAX_OBJECTS for name in ARRAYS):
            requests.append(current)
            current = {name: [] for name in ARRAYS}
        for name in ARRAYS:
            current[name] += [(index, obj) for obj in item.get(name, ())]
    requests.append(current)
    return [request for request in requests if any(request.values())]
