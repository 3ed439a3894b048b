"""The session-wide SeaweedFS server (tests/support/seaweed.py) for the S3 tests here."""

from tests.support.seaweed import seaweed  # noqa: F401 - a pytest fixture, used by name
