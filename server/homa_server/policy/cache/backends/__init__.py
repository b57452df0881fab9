"""Response-cache backends: memory, Redis, Memcached (aiocache) and filesystem."""
