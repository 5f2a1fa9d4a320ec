"""Per-socket abuse limits on what a client sends over WebSocket (tracker issue 12, item 4).

A board socket may post (`{"type": "post", ...}` frames) at most `burst` times at once and `rate`
times per second sustained; a post over that is answered with an error frame and not stored, and the
socket stays open. The bucket is aiolimiter's `AsyncLimiter`, a maintained leaky bucket for asyncio
(https://aiolimiter.readthedocs.io): capacity `burst`, draining `rate` per second, which is a token
bucket of `burst` tokens refilled at `rate`. Used without waiting (`has_capacity`, then `acquire`,
which then returns at once): a limited client is told, not slowed down while holding the consumer.

Frame size is not limited here: Daphne refuses a message over `--websocket-max-message-size` (deploy
variable daphne_ws_max_message_size) before the app sees it, closing the socket with 1009.
"""

from aiolimiter import AsyncLimiter
from django.core.exceptions import ImproperlyConfigured


class PostRate:
    """One socket's budget of posts: `burst` at once, refilled at `rate` per second.

    rate: posts per second sustained (> 0, may be fractional: 0.5 is one every 2 s).
    burst: posts allowed at once from a full bucket (an integer >= 1).
    Raises ImproperlyConfigured for values outside those ranges (settings WS_POST_RATE/WS_POST_BURST).
    """

    def __init__(self, rate: float, burst: float):
        if not rate > 0:
            raise ImproperlyConfigured(f"WS_POST_RATE={rate!r}: expected posts per second > 0")
        if not (burst >= 1 and float(burst).is_integer()):
            raise ImproperlyConfigured(f"WS_POST_BURST={burst!r}: expected a whole number of posts >= 1")
        self.rate = rate
        self.burst = int(burst)
        self._bucket = AsyncLimiter(max_rate=self.burst, time_period=self.burst / rate)

    async def take(self) -> bool:
        """Use one post of the budget: True if it fits, False (nothing used) if the socket is over it."""
        if not self._bucket.has_capacity():
            return False
        await self._bucket.acquire()  # has capacity: returns at once
        return True

    @property
    def retry_after(self) -> float:
        """Seconds after which a refused client has room for one more post (at most 1 / rate)."""
        return 1 / self.rate

    def describe(self) -> str:
        """The limit in words, for the error frame."""
        return f"at most {self.burst} posts at once and {self.rate:g} per second on one socket"
