import time
import pytest
pytestmark = pytest.mark.security

async def test_flow(platform, captured_logs):
    t = time.monotonic()
    orders = await platform.flow(3)
    print("flow", time.monotonic() - t, len(platform.messages()))
    print(platform.messages("delivered")[0])
