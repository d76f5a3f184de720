"""Remake tests/fixtures/opencompass/reference_prompts.json with OpenCompass 0.5.4's own prompt code.

Runs inside OpenCompass' venv (it imports opencompass and mmengine), no model: for each dataset of
tests/fixtures/opencompass/eval_reference.py plus eval_prompts_extra.py (a RandomRetriever, a
string template, a CustomDataset) and eval_prompts_choice.py (the stock ARC, HellaSwag, Winogrande,
PIQA and BoolQ configs, on tests/opencompass_data.py's write_choice_data files), builds the dataset, retriever and templates from the config and
renders every test prompt as PPLInferencer / GenInferencer do (generate_ice, generate_label_prompt
or generate_prompt_for_generate_task, then the model's parse_template), once for a base model
(LMTemplateParser without meta template) and once with a meta_template.

    # after benchmarks/reference/opencompass_reference.py wrote the data under the run folder:
    cd ~/.cache/lmgauge-ref/opencompass-run && \
      ~/.cache/lmgauge-ref/opencompass-0.5.4/bin/python /path/to/lmgauge/benchmarks/reference/opencompass_prompts.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "opencompass"
CONFIGS = (
    "eval_reference.py",
    "eval_prompts_extra.py",
    "eval_prompts_choice.py",
)  # tests/test_opencompass_prompts.py reads the same

# a meta template of the kind base-model configs carry (roles with begin/end, the BOT generating)
META_TEMPLATE = dict(
    round=[
        dict(role="HUMAN", begin="<|User|>: ", end="\n"),
        dict(role="BOT", begin="<|Bot|>: ", end="<eoa>\n", generate=True),
    ],
    begin="<s>",
)


def main() -> int:
    from mmengine.config import Config
    from opencompass.models.base import LMTemplateParser
    from opencompass.registry import ICL_PROMPT_TEMPLATES, ICL_RETRIEVERS
    from opencompass.utils import build_dataset_from_cfg

    parsers = {"base": LMTemplateParser(), "meta": LMTemplateParser(META_TEMPLATE)}
    out: dict[str, dict] = {"meta_template": META_TEMPLATE, "datasets": {}}
    for name in CONFIGS:
        cfg = Config.fromfile(str(FIXTURES / name))
        for ds_cfg in cfg["datasets"]:
            abbr = ds_cfg["abbr"]
            infer = ds_cfg["infer_cfg"]
            dataset = build_dataset_from_cfg(ds_cfg)
            rcfg = dict(infer["retriever"])
            rcfg["dataset"] = dataset
            retriever = ICL_RETRIEVERS.build(rcfg)
            ice_t = ICL_PROMPT_TEMPLATES.build(infer["ice_template"]) if "ice_template" in infer else None
            prompt_t = ICL_PROMPT_TEMPLATES.build(infer["prompt_template"]) if "prompt_template" in infer else None
            ids = retriever.retrieve()
            t = infer["inferencer"]["type"]
            kind = (t if isinstance(t, str) else t.__name__).split(".")[-1]
            rows = []
            for idx, ice_idx in enumerate(ids):
                ice = retriever.generate_ice(ice_idx, ice_template=ice_t)
                row: dict = {"ice_ids": list(ice_idx)}
                for pname, parser in parsers.items():
                    if kind == "PPLInferencer":
                        labels = retriever.get_labels(ice_template=ice_t, prompt_template=prompt_t)
                        row[pname] = {
                            str(lab): parser.parse_template(
                                retriever.generate_label_prompt(idx, ice, lab, ice_t, prompt_t), mode="ppl"
                            )
                            for lab in labels
                        }
                    else:
                        p = retriever.generate_prompt_for_generate_task(
                            idx, ice, gen_field_replace_token="", ice_template=ice_t, prompt_template=prompt_t
                        )
                        row[pname] = parser.parse_template(p, mode="gen")
                rows.append(row)
            out["datasets"][abbr] = {"inferencer": kind, "rows": rows}
            print(abbr, kind, len(rows), file=sys.stderr)
    target = FIXTURES / "reference_prompts.json"
    target.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
