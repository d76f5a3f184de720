# An OpenCompass-style config: `lmgauge run configs/example.py`
models = [
    dict(
        abbr="smollm2-135m",
        path="~/models/SmolLM2-135M-Instruct",  # an HF folder or a .gguf file
        max_seq_len=2048,
        batch_size=8,
        model_kwargs=dict(device_map="auto", torch_dtype="torch.float32"),
        run_cfg=dict(num_gpus=1),
    ),
]
datasets = [
    "mmlu",  # all 57 subjects, 5-shot
    dict(name="arc_easy", split="validation"),
    "hellaswag",
    dict(name="wikitext2", seq_len=2048, bs=1),
]
work_dir = "outputs"
