"""Adapters: the only modules that import vendor SDKs; each translates its vendor's errors."""
