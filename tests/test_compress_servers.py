"""save_fake's folder served by a real vLLM CPU server gives the perplexity the in-process fake-quant
model gives (within 1e-3 relative): the saved weights are the evaluated weights, and a server loads them."""

from __future__ import annotations

import json

import pytest
import yaml

from lmgauge.cli import main
from servers import running_server
from test_compress_real import SEQ_LEN, smollm2_folder, wikitext_dir  # noqa: F401 - fixtures shared with that module

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_save_fake_served_by_vllm_gives_the_same_perplexity(tmp_path, smollm2_folder, wikitext_dir):  # noqa: F811
    from lmgauge.models.openai_api import OpenAIModel
    from lmgauge.tasks import build

    save = tmp_path / "save"
    cfg = {
        "model": {"path": str(smollm2_folder), "torch_dtype": "float32", "abbr": "smollm2"},
        "eval": {"eval_pos": ["fake_quant"], "name": "wikitext2", "path": str(wikitext_dir), "seq_len": SEQ_LEN},
        "quant": {
            "method": "RTN",
            "weight": {"bit": 4, "symmetric": False, "granularity": "per_group", "group_size": 64},
        },
        "save": {"save_fake": True, "save_path": str(save)},
        "work_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "compress.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    assert main(["run", str(path), "--run-id", "r", "--no-report"]) == 0
    here = json.loads((tmp_path / "out" / "r" / "results" / "smollm2_fake_quant" / "wikitext2.json").read_text())
    ppl_here = here["metrics"]["perplexity"]["value"]

    folder = save / "fake_quant_model"
    task = build("wikitext2", path=str(wikitext_dir / "wikitext-2-raw"), seq_len=SEQ_LEN)
    (doc,), _ = task.load()
    with running_server("vllm", model=folder) as url:
        served = OpenAIModel(f"{url}/v1", api_model=url.model, tokenizer_path=str(folder), name="served")
        (r,) = served.loglikelihood_rolling(task.requests(doc, 0))
    assert r.error is None, r.error
    ppl_served = task.aggregate([task.score(doc, 0, [r])])["perplexity"]["value"]
    print(json.dumps({"in_process": ppl_here, "vllm_cpu": ppl_served, "rel": ppl_served / ppl_here - 1}))
    assert ppl_served == pytest.approx(ppl_here, rel=1e-3)
