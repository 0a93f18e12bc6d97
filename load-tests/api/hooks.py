"""Schemathesis checks of our own: what a 4xx of the console must carry."""

import schemathesis


@schemathesis.check
def client_errors_name_the_problem(ctx, response, case):
    """Every 4xx answers JSON {"error": "<what was wrong>"}, never an empty or plain-text body."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except Exception:
        raise AssertionError(
            f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        )
    message = body.get("error") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        raise AssertionError(f'{response.status_code} body has no "error" message: {body!r}')
    return None
