"""Test-wide setup: offline Hub, small thread pools, `gpu` auto-skip."""

import os

# Must be set before huggingface_hub / transformers / datasets are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session", autouse=True)
def _small_thread_pool():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def demo_corpus_dir():
    from data_prep.demo_corpus import FIXTURE_DIR

    return FIXTURE_DIR
