"""OpenCompass 0.5.4's prompt text, rebuilt: PromptList, PromptTemplate, retrievers' in-context
examples, and the base-model template parser (LMTemplateParser).

Each function follows the OpenCompass code path of the same name (openicl/icl_prompt_template.py,
icl_retriever/icl_base_retriever.py, utils/prompt.py, models/base.py) step for step, quirks
included: entry fields are substituted with str.replace in the row's column order, after the
in-context examples were inserted (so a `{field}` inside an example is substituted too); the ice
template's sep_token is not removed; a base model without meta template joins the items of a
round-structured prompt with "\\n". docs/opencompass.md lists where this differs from lm-eval.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from typing import Any, Union

Entry = dict[str, Any]


def safe_format(template: str, /, **entry: Any) -> str:
    """utils.prompt.safe_format: each `{key}` replaced by str(value), key by key in entry order
    (positional-only: a column may be called anything)."""
    for k, v in entry.items():
        template = template.replace(f"{{{k}}}", str(v))
    return template


class PromptList(list):
    """utils.prompt.PromptList: strings and dicts (role prompts, section markers)."""

    def format(self, /, **entry: Any) -> PromptList:
        out = PromptList()
        for item in self:
            if isinstance(item, dict):
                new = copy.deepcopy(item)
                if "prompt" in item:
                    new["prompt"] = safe_format(item["prompt"], **entry)
                out.append(new)
            else:
                out.append(safe_format(item, **entry))
        return out

    def replace(self, src: str, dst: Union[str, PromptList]) -> PromptList:  # noqa: UP007 - PromptList is defined here
        out = PromptList()
        for item in self:
            if isinstance(item, str):
                if isinstance(dst, str):
                    out.append(item.replace(src, dst))
                else:
                    parts = item.split(src)
                    for i, part in enumerate(parts):
                        if part:
                            out.append(part)
                        if i < len(parts) - 1:
                            out += dst
            elif isinstance(item, dict):
                new = copy.deepcopy(item)
                if "prompt" in item and src in item["prompt"]:
                    if isinstance(dst, PromptList):
                        raise TypeError(f"found {src!r} in a role's prompt: cannot replace it with a round list")
                    new["prompt"] = new["prompt"].replace(src, dst)
                out.append(new)
            else:
                out.append(item.replace(src, dst))
        return out

    def __add__(self, other):  # str or PromptList, as OpenCompass allows
        if not other:
            return PromptList([*self])
        if isinstance(other, str):
            return PromptList([*self, other])
        return PromptList(list.__add__(self, other))

    def __iadd__(self, other):  # str or PromptList, as OpenCompass allows
        if not other:
            return self
        if isinstance(other, str):
            self.append(other)
        else:
            list.__iadd__(self, other)
        return self


PromptType = Union[str, PromptList]  # noqa: UP007 - a runtime alias


class PromptTemplate:
    """icl_prompt_template.PromptTemplate (template: a string, a label -> prompt dict, or a
    begin/round/end dict of role prompts)."""

    def __init__(self, template: str | dict, ice_token: str | None = None, sep_token: str | None = None) -> None:
        if not isinstance(template, (str, dict)):
            raise TypeError(f"template must be a string or a dict, got {type(template).__name__}")
        self.template = template
        self.ice_token = ice_token
        self.sep_token = sep_token
        self.prompt_type = "origin"
        if isinstance(template, dict):
            n = sum(k in template for k in ("begin", "round", "end"))
            self.prompt_type = "meta" if n == len(template) else "origin"
            for v in template.values():
                if not isinstance(v, (str, list, dict)):
                    raise TypeError(f"a template's values are strings, lists or dicts, got {v!r}")
                if isinstance(v, str) and ice_token and ice_token not in v:
                    raise LookupError(f"ice_token {ice_token!r} is not in the template {v!r}")
        elif ice_token and ice_token not in template:
            raise LookupError(f"ice_token {ice_token!r} is not in the template {template!r}")

    def _pick(self, label: Hashable | None) -> Any:
        if isinstance(self.template, str) or self.prompt_type == "meta":
            return self.template
        if label not in self.template and str(label) in self.template:
            label = str(label)  # the config's int keys (`{0: ..., 1: ...}`) are strings after reading
        if label not in self.template:
            raise KeyError(f"the template has no prompt for label {label!r} (it has {list(self.template)})")
        return self.template[label]

    def generate_ice_item(self, entry: Entry, label: Hashable) -> PromptType:
        tp = encode_template(self._pick(label), ice=True)
        # OpenCompass drops the result of removing sep_token here: the ice keeps it
        if self.ice_token is not None:
            tp = tp.replace(self.ice_token, "")
        return safe_format(tp, **entry) if isinstance(tp, str) else tp.format(**entry)

    def generate_label_prompt_item(
        self, entry: Entry, ice: PromptType, label: Hashable, remain_sep: bool = False
    ) -> PromptType:
        tp = encode_template(self._pick(label), ice=False)
        if not remain_sep and self.sep_token is not None:
            tp = tp.replace(self.sep_token, "")
        if self.ice_token is not None:
            tp = tp.replace(self.ice_token, ice)  # type: ignore[arg-type]  # str into str, list into list
        return safe_format(tp, **entry) if isinstance(tp, str) else tp.format(**entry)

    def generate_item(
        self,
        entry: Entry,
        output_field: str | None = None,
        output_field_replace_token: str = "",
        ice_field_replace_token: PromptType = "",
    ) -> PromptType:
        if isinstance(self.template, str):
            tp: PromptType = self.template
        elif self.prompt_type == "origin":  # a per-label template under GenInferencer: the first label's
            tp = encode_template(self.template[next(iter(self.template))], ice=False)
        else:
            tp = encode_template(self.template, ice=False)
        if self.ice_token is not None:
            tp = tp.replace(self.ice_token, ice_field_replace_token)  # type: ignore[arg-type]  # as above
        if self.sep_token is not None:
            tp = tp.replace(self.sep_token, "")
        if output_field is not None:
            entry = {**entry, output_field: output_field_replace_token}
        return safe_format(tp, **entry) if isinstance(tp, str) else tp.format(**entry)


def encode_template(tp: Any, ice: bool) -> PromptType:
    """PromptTemplate._encode_template: a string stays; a round dict becomes a PromptList with
    section markers (begin/end sections only outside in-context examples)."""
    if isinstance(tp, str):
        return tp
    prompt = PromptList()
    if "begin" in tp and not ice:
        prompt.append(dict(section="begin", pos="begin"))
        prompt += tp["begin"] if isinstance(tp["begin"], list) else [tp["begin"]]
        prompt.append(dict(section="begin", pos="end"))
    section = "ice" if ice else "round"
    prompt.append(dict(section=section, pos="begin"))
    prompt += tp["round"]
    prompt.append(dict(section=section, pos="end"))
    if "end" in tp and not ice:
        prompt.append(dict(section="end", pos="end"))  # sic: OpenCompass opens the end section with pos=end
        prompt += tp["end"] if isinstance(tp["end"], list) else [tp["end"]]
        prompt.append(dict(section="end", pos="end"))
    return prompt


def generate_ice(
    shots: Sequence[Entry],
    output_column: str | None,
    ice_template: PromptTemplate | None,
    ice_separator: str,
    ice_eos_token: str,
) -> PromptType:
    """BaseRetriever.generate_ice: the in-context examples of one test row."""
    if ice_template is None:
        if shots:
            raise ValueError("in-context examples were retrieved but there is no ice_template")
        return ice_eos_token  # OpenCompass: "".join([]) + eos
    if ice_template.prompt_type == "meta":
        ice_separator, ice_eos_token = "", ""
    items = [ice_template.generate_ice_item(s, s[output_column] if output_column else None) for s in shots]
    if items and isinstance(items[0], PromptList):
        out = PromptList()
        for it in items:
            out += it + ice_separator
        out.append(ice_eos_token)
        return out
    return ice_separator.join(items) + ice_eos_token  # type: ignore[arg-type]  # all strings here


def lm_parse(prompt: PromptType, meta_template: dict | None = None, mode: str = "ppl") -> str:
    """LMTemplateParser.parse_template for base models: a PromptList to the text the model reads."""
    if isinstance(prompt, str):
        return prompt
    if meta_template:
        return _parse_with_meta(prompt, meta_template, mode)
    out, last_sep = "", ""
    for item in prompt:
        if isinstance(item, dict) and set(item) == {"section", "pos"}:
            continue
        if isinstance(item, str):
            if item:
                out += last_sep + item
        elif item.get("prompt", ""):
            out += last_sep + item.get("prompt", "")
        last_sep = "\n"
    return out


def _roles(meta: dict) -> dict[str, dict]:
    roles: dict[str, dict] = {}
    for key in ("round", "reserved_roles"):
        for item in meta.get(key, []):
            if isinstance(item, dict):
                if item["role"] in roles:
                    raise ValueError(f"meta_template: role {item['role']!r} appears twice")
                if isinstance(item.get("begin"), list) or isinstance(item.get("end"), list):
                    raise ValueError("meta_template: list-valued begin/end (special token ids) is not supported")
                roles[item["role"]] = dict(item)
    return roles


def _role_dict(roles: dict[str, dict], prompt: Any) -> dict[str, dict]:
    rd = copy.deepcopy(roles)
    if isinstance(prompt, str):
        return rd
    for p in [prompt] if isinstance(prompt, dict) else prompt:
        if isinstance(p, dict):
            role = p["role"] if p["role"] in roles else p.get("fallback_role")
            if role not in rd:
                raise ValueError(f"meta_template has no role {p['role']!r} and no fallback_role is given")
            rd[role].update(p)
    return rd


def _prompt2str(prompt: Any, rd: dict[str, dict], for_gen: bool) -> tuple[str, bool]:
    if isinstance(prompt, str):
        return prompt, True
    if isinstance(prompt, dict):
        merged = rd.get(prompt["role"], rd.get(prompt.get("fallback_role", "")))
        assert merged is not None
        res = merged.get("begin", "")
        if for_gen and merged.get("generate", False):
            return res, False
        return res + merged.get("prompt", "") + merged.get("end", ""), True
    res, cont = "", True
    for p in prompt:
        s, cont = _prompt2str(p, rd, for_gen)
        res += s
        if not cont:
            break
    return res, cont


def _split_rounds(dialogue: list, single_round: list) -> list[int]:
    role_idx = {r["role"]: i for i, r in enumerate(single_round) if not isinstance(r, str)}
    last, cuts = -1, [0]
    for i, t in enumerate(dialogue):
        if isinstance(t, str):
            continue
        ri = role_idx[t["role"]]
        if ri <= last:
            cuts.append(i)
        last = ri
    cuts.append(len(dialogue))
    return cuts


def _parse_with_meta(prompt: PromptList, meta: dict, mode: str) -> str:
    roles = _roles(meta)
    out, generate = "", True
    stack: list[tuple[str, int]] = []
    for i, item in enumerate(prompt):
        if not generate:
            break
        if isinstance(item, str):
            out += item
        elif isinstance(item, dict) and "section" in item:
            if item["pos"] == "end":
                name, start = stack.pop(-1)
                if name in ("round", "ice"):
                    dialogue = prompt[start:i]
                    cuts = _split_rounds(dialogue, meta["round"])
                    for k in range(len(cuts) - 1):
                        rt = dialogue[cuts[k] : cuts[k + 1]]
                        s, generate = _prompt2str(
                            meta["round"],
                            _role_dict(roles, rt),
                            for_gen=mode == "gen" and k == len(cuts) - 2 and name == "round",
                        )
                        out += s
            else:
                stack.append((item["section"], i + 1))
        elif stack and stack[-1][0] in ("begin", "end"):
            s, generate = _prompt2str(item, _role_dict(roles, item), for_gen=False)
            out += s
    out = meta.get("begin", "") + out
    if generate:
        out += meta.get("end", "")
    return out


def chat_messages(prompt: PromptType) -> list[tuple[str, str]]:
    """huggingface_above_v4_33._convert_chat_messages (merge_role, skip_empty_prompt): the
    (role, content) turns a chat-template model is given."""
    if isinstance(prompt, str):
        return [("user", prompt)]
    role_map = {"HUMAN": "user", "BOT": "assistant", "SYSTEM": "system"}
    turns: list[tuple[str, str]] = []
    for item in prompt:
        if not isinstance(item, dict) or "role" not in item:
            continue
        if not item.get("prompt"):
            continue
        role = str(role_map.get(item["role"], item["role"]))
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n" + item["prompt"])
        else:
            turns.append((role, str(item["prompt"])))
    return turns
