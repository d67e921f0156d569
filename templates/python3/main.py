"""The {{name}} function. Hearth calls handler() once per HTTP request.

event:   {"method", "path", "query", "headers", "body"}  (a JSON body arrives already parsed)
context: invocation_id, function_name, namespace, get_remaining_time_in_millis(), log
Return a dict (or list) for a 200 JSON response, or {"statusCode": ..., "headers": ..., "body": ...}.
"""


def handler(event, context):
    body = event.get("body")
    name = (body.get("name") if isinstance(body, dict) else None) or event["query"].get("name") or "world"
    return {
        "message": f"Hello, {name}!",
        "method": event["method"],
        "path": event["path"],
        "invocationId": context.invocation_id,
    }
