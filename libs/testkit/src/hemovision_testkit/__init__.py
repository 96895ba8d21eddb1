"""Test fixtures against real PostgreSQL and Redis (loaded as a pytest plugin)."""
