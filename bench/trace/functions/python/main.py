# A trace function: busy for ?ms= milliseconds. Synchronous, so one request per instance at a time.
import time


def handler(event, context):
    ms = float(event["query"].get("ms", "1"))
    time.sleep(ms / 1000)
    return {"ms": ms}
