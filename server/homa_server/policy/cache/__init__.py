"""Response cache of chat completions: keys and rules (keys.py), stored form (entry.py), backends
(backends/: memory, Redis, Memcached, filesystem), the service (service.py), the optional semantic
cache (semantic.py), hit replay (replay.py) and the dispatcher wrappers (flow.py). See
docs/routing.md "Response cache".
"""

from homa_server.policy.cache.factory import build_cache
from homa_server.policy.cache.flow import complete_through_cache, stream_through_cache
from homa_server.policy.cache.service import ResponseCache

__all__ = ["ResponseCache", "build_cache", "complete_through_cache", "stream_through_cache"]
