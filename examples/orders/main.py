"""The seed's order case, event-sourced: an order is the events of its stream (OrderPlaced, ItemAdded,
OrderPaid), rebuilt on every read from the latest snapshot plus the events after it.

  POST /function/orders/<id>  {"type": "OrderPlaced", "customer": "ada"}
  POST /function/orders/<id>  {"type": "ItemAdded", "sku": "tea", "priceCents": 450, "quantity": 2}
  POST /function/orders/<id>  {"type": "OrderPaid"}
  GET  /function/orders/<id>  -> the order as its events make it
"""

SNAPSHOT_EVERY = 100
PAGE = 1000


def apply(order, event):
    """One event's effect on the order (None before OrderPlaced)."""
    data = event["data"]
    if event["type"] == "OrderPlaced":
        return {"id": event["stream"], "customer": data.get("customer"), "status": "open", "items": [], "totalCents": 0}
    if event["type"] == "ItemAdded":
        line = {"sku": data["sku"], "quantity": data.get("quantity", 1), "priceCents": data["priceCents"]}
        return {**order, "items": order["items"] + [line], "totalCents": order["totalCents"] + line["quantity"] * line["priceCents"]}
    if event["type"] == "OrderPaid":
        return {**order, "status": "paid"}
    return order


def rebuild(events, order_id):
    """The order and the stream version it was built from: the latest snapshot, then the events after it."""
    snapshot = events.latest_snapshot(order_id)
    order = snapshot["state"] if snapshot else None
    version = snapshot["version"] if snapshot else 0
    while True:
        page = events.read(order_id, start=version + 1, limit=PAGE)
        for event in page:
            order = apply(order, event)
            version = event["version"]
        if len(page) < PAGE:
            return order, version


def refuse(status, message):
    return {"statusCode": status, "body": {"error": message}}


def decide(order, command):
    """The event a command makes, or an error: the business rules live here, against the rebuilt order."""
    kind = command.get("type")
    if kind == "OrderPlaced":
        return (None, "the order exists already") if order else ({"type": kind, "data": {"customer": command.get("customer")}}, None)
    if order is None:
        return None, "no such order; place it first"
    if order["status"] == "paid":
        return None, "the order is paid; it cannot change"
    if kind == "ItemAdded":
        if not isinstance(command.get("priceCents"), int) or not command.get("sku"):
            return None, "ItemAdded needs sku and priceCents (an integer)"
        return {"type": kind, "data": {"sku": command["sku"], "priceCents": command["priceCents"], "quantity": command.get("quantity", 1)}}, None
    if kind == "OrderPaid":
        return {"type": kind, "data": {"totalCents": order["totalCents"]}}, None
    return None, f"unknown command type {kind!r}; expected OrderPlaced, ItemAdded or OrderPaid"


def handler(event, ctx):
    order_id = event["path"].strip("/")
    if not order_id:
        return refuse(400, "the order id goes in the path: /function/orders/<id>")
    if event["method"] == "GET":
        order, version = rebuild(ctx.events, order_id)
        return refuse(404, f"no order {order_id}") if order is None else {**order, "version": version}
    command = event["body"] if isinstance(event["body"], dict) else {}
    # Optimistic concurrency: decide against the version read; another writer in between means read again.
    for _ in range(10):
        order, version = rebuild(ctx.events, order_id)
        new_event, error = decide(order, command)
        if error:
            return refuse(409, error)
        try:
            appended = ctx.events.append(order_id, new_event, expected_version=version)
        except ctx.events.ConflictError:
            continue
        if appended["version"] % SNAPSHOT_EVERY == 0:
            ctx.events.snapshot(order_id, appended["version"], apply(order, {**new_event, "stream": order_id}))
        return {"statusCode": 201, "body": {"id": order_id, "version": appended["version"], "event": appended["events"][0]["id"]}}
    return refuse(503, "too many concurrent changes to this order; try again")
