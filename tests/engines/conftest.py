"""Fixtures for the engine tests: the loopback OpenAI stub and real clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from openai import AsyncOpenAI, OpenAI

from tests.openai_stub import StubServer


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture
def client(stub: StubServer) -> Iterator[OpenAI]:
    with OpenAI(base_url=stub.base_url, api_key="sk-test", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def aclient(stub: StubServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=stub.base_url, api_key="sk-test", max_retries=0, timeout=10)
