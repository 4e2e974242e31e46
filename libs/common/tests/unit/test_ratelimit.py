import pytest

from lastmile.common.errors import TooManyRequests
from lastmile.common.ratelimit import RateLimiter


def test_allows_a_burst_then_paces_to_the_rate() -> None:
    limiter = RateLimiter(rate=10, burst=5)
    assert [limiter.take("m", now=0.0) for _ in range(5)] == [0.0] * 5
    assert limiter.take("m", now=0.0) == pytest.approx(0.1)
    assert limiter.take("m", now=0.1) == 0.0


def test_callers_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.take("a", now=0.0) == 0.0
    assert limiter.take("b", now=0.0) == 0.0
    assert limiter.take("a", now=0.0) > 0


def test_check_says_when_to_retry() -> None:
    limiter = RateLimiter(rate=0.5, burst=1)
    limiter.check("m")
    with pytest.raises(TooManyRequests) as caught:
        limiter.check("m")
    assert caught.value.headers == {"Retry-After": "2"}
