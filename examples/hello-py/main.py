# The smallest Hearth Python function: `curl localhost:8080/function/hello-py` answers {"hello": "world"}.
def handler(event, context):
    return {"hello": "world"}
