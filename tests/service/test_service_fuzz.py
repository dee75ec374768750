"""Schemathesis against the published OpenAPI document, with an admin token: no request may cause a 5xx.

Each operation's strategy is driven by Hypothesis directly (schemathesis' pytest plugin does not load with this
pytest); every generated request goes through the real app.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from app.api.auth import Role
from tests.service.conftest import Service

pytestmark = pytest.mark.slow

EXAMPLES = 10


@schemathesis.serializer("multipart/related")
def _related(ctx: object, value: object) -> bytes:
    """STOW-RS bodies: whatever was generated, as bytes (the endpoint must refuse it with a 4xx)."""
    return value if isinstance(value, bytes) else str(value).encode()


def test_no_server_error_on_any_generated_request(service_factory: Callable[..., Service]) -> None:
    svc = service_factory()
    headers = {"Authorization": f"Bearer {svc.token(Role.ADMIN, sub='fuzz')}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", svc.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    calls: dict[str, int] = {}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])

        check()
    assert len(calls) == len(operations)
