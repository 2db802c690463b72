"""Helpers the tests share: servers, clients, fakes and images.

Test modules import from here, never from one another; fixtures live in
``tests/conftest.py`` and build on these.
"""
