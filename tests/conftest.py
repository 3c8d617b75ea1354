"""Shared fixtures: a hermetic tgad cache for the whole session and small dataset folders per test."""

from __future__ import annotations

import os

import pytest
import torch

from tests.helpers.datasets import write_btad, write_loco, write_mvtec


def pytest_configure(config):
    torch.set_num_threads(int(os.environ.get("TGAD_TEST_THREADS", "2")))


@pytest.fixture(scope="session", autouse=True)
def _hermetic_cache(tmp_path_factory):
    """Each test session gets its own tgad cache: nothing is read from or written to the user's."""
    cache = tmp_path_factory.mktemp("tgad-cache")
    old = os.environ.get("TGAD_CACHE")
    os.environ["TGAD_CACHE"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    yield cache
    if old is None:
        os.environ.pop("TGAD_CACHE", None)
    else:
        os.environ["TGAD_CACHE"] = old


@pytest.fixture
def one_torch_thread():
    """Small nets on a shared CPU: one thread is several times faster than two fighting for cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def mvtec_root(tmp_path):
    write_mvtec(tmp_path)
    return tmp_path


@pytest.fixture
def btad_root(tmp_path):
    write_btad(tmp_path)
    return tmp_path


@pytest.fixture
def loco_root(tmp_path):
    write_loco(tmp_path)
    return tmp_path
