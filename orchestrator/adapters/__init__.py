"""Adapters: vendor SDKs live here only; vendor errors are translated here."""
